// IPv4/IPv6 addresses and prefixes, for placing hosts into zones on the map.

export function parseIp(s: string): { v6: boolean; n: bigint } | null {
  if (s.includes(':')) return parseV6(s);
  const p = s.split('.');
  if (p.length !== 4) return null;
  let n = 0n;
  for (const x of p) {
    if (!/^\d{1,3}$/.test(x)) return null;
    const v = Number(x);
    if (v > 255) return null;
    n = (n << 8n) | BigInt(v);
  }
  return { v6: false, n };
}

function parseV6(s: string): { v6: boolean; n: bigint } | null {
  const parts = s.split('::');
  if (parts.length > 2) return null;
  const head = parts[0] ? parts[0].split(':') : [];
  const tail = parts.length === 2 && parts[1] ? parts[1].split(':') : [];
  const missing = 8 - head.length - tail.length;
  if (parts.length === 1 ? missing !== 0 : missing < 1) return null;
  const groups = [...head, ...Array(parts.length === 2 ? missing : 0).fill('0'), ...tail];
  let n = 0n;
  for (const g of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
    n = (n << 16n) | BigInt(parseInt(g, 16));
  }
  return { v6: true, n };
}

export interface Prefix {
  v6: boolean;
  n: bigint;
  len: number;
}

export function parsePrefix(s: string): Prefix | null {
  const [a, l] = s.split('/');
  const ip = parseIp(a);
  if (!ip) return null;
  const max = ip.v6 ? 128 : 32;
  const len = l === undefined ? max : Number(l);
  if (!Number.isInteger(len) || len < 0 || len > max) return null;
  return { ...ip, len };
}

export function contains(p: Prefix, ip: string): boolean {
  const a = parseIp(ip);
  if (!a || a.v6 !== p.v6) return false;
  const bits = BigInt(p.v6 ? 128 : 32);
  const shift = bits - BigInt(p.len);
  return a.n >> shift === p.n >> shift;
}
