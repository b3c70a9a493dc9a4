// Starts the console demo server (control/examples/console_demo.rs: the real API, the embedded
// console from webui/dist, a temporary data directory with the demo policy and simulated
// traffic) and returns its URL and credentials.
import { spawn, execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

export async function startServer() {
  execFileSync('cargo', ['build', '--quiet', '--locked', '-p', 'septa-control', '--example', 'console_demo'], {
    cwd: repo,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const target = process.env.CARGO_TARGET_DIR ?? join(repo, 'target');
  const port = await freePort();
  const child = spawn(join(target, 'debug/examples/console_demo'), ['--port', String(port), '--fast-hash'], {
    cwd: repo,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  const info = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${out}`)), 60_000);
    child.on('exit', (c) => reject(new Error(`server exited (${c}):\n${out}`)));
    child.stdout.on('data', (d) => {
      out += d;
      const pw = out.match(/first login: admin \/ (\S+)/);
      const tok = out.match(/admin token: (\S+)/);
      const url = out.match(/listening: (\S+)/);
      if (pw && tok && url) {
        clearTimeout(timer);
        resolve({ password: pw[1], token: tok[1], url: url[1].replace(/\/$/, '') });
      }
    });
  });
  // Wait until it answers.
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${info.url}/healthz`)).ok) break;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const api = async (method, path, body) => {
    const r = await fetch(info.url + path, {
      method,
      headers: { Authorization: `Bearer ${info.token}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
    return r.json();
  };
  return { ...info, api, stop: () => child.kill('SIGTERM') };
}
