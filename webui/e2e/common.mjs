// Helpers shared by the two end-to-end suites: console.test.mjs (against console_demo, simulated
// traffic) and lab.mjs (against the `septa` process of a running lab, real traffic; run by
// tests/lab.rs). Not a test file itself (node --test runs *.test.mjs only).
import { chromium } from 'playwright-core';

/** Debian's Chromium, driven by playwright-core (no browser is downloaded). */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--no-first-run', '--disable-sync', '--disable-quic'],
  });
}

export async function login(p, user, password) {
  await p.fill('input[name=user]', user);
  await p.fill('input[name=password]', password);
  await p.click('button[type=submit]');
}

export async function editorText(p) {
  return p.evaluate(() => document.querySelector('[data-testid=editor]').editor.text());
}

/** Replaces `from` outside comments: the editor holds the operator's own text, comments included. */
export function inPolicy(text, from, to) {
  return text
    .split('\n')
    .map((l) => (l.trimStart().startsWith('#') ? l : l.replace(from, to)))
    .join('\n');
}

/** Replaces the whole editor text through the keyboard, as a person would paste it. */
export async function setEditor(p, text) {
  await p.click('[data-testid=editor] .cm-content');
  await p.keyboard.press('Control+A');
  await p.keyboard.press('Delete');
  await p.keyboard.insertText(text);
}

/**
 * First meaningful paint of the dashboard, `rounds` fresh loads in new tabs of a signed-in
 * `context`: first contentful paint and the frame after the dashboard's data arrived
 * (`septa:dashboard-loaded`), in ms from navigation start, and the response it waited on last.
 */
export async function dashboardPaint(context, url, rounds = 5) {
  const t = [];
  for (let i = 0; i < rounds; i++) {
    const p = await context.newPage();
    await p.goto(url + '/#/dashboard');
    await p.waitForSelector('[data-testid=dashboard][data-loaded]');
    t.push(
      await p.evaluate(
        () =>
          new Promise((resolve) =>
            requestAnimationFrame(() => {
              const fcp = performance.getEntriesByName('first-contentful-paint')[0];
              const loaded = performance.getEntriesByName('septa:dashboard-loaded')[0];
              // The request the data waited on longest (path and when its response ended).
              const last = performance
                .getEntriesByType('resource')
                .filter((e) => e.responseEnd <= (loaded?.startTime ?? Infinity))
                .sort((a, b) => b.responseEnd - a.responseEnd)[0];
              resolve({
                fcpMs: Math.round(fcp?.startTime ?? -1),
                dataPaintedMs: Math.round(loaded?.startTime ?? -1),
                lastResponse: last ? `${new URL(last.name).pathname} ${Math.round(last.responseEnd)} ms` : null,
              });
            }),
          ),
      ),
    );
    await p.close();
  }
  return t;
}
