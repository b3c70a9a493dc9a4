// Small formatting helpers shared by the pages.

const PROTOS: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'icmpv6', 132: 'sctp' };
export function protoName(p: number): string {
  return PROTOS[p] ?? String(p);
}

export function bytes(n: number): string {
  const u = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1000 && i < u.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? v.toFixed(0) : v.toFixed(1)} ${u[i]}`;
}

export function rate(n: number, unit: string): string {
  const u = ['', 'k', 'M', 'G'];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1000 && i < u.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v < 10 && i > 0 ? v.toFixed(1) : v.toFixed(0)} ${u[i]}${unit}`;
}

/** "3 min ago", "2 h 5 min ago". */
export function age(ms: number, now: number = Date.now()): string {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min ago`;
  return `${Math.floor(h / 24)} days ago`;
}

/** Remaining time as m:ss (0:00 when past). */
export function countdown(deadlineMs: number, now: number = Date.now()): string {
  const s = Math.max(0, Math.ceil((deadlineMs - now) / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

export function shortHash(h: string | null | undefined): string {
  return h ? h.slice(0, 8) : '—';
}

export function time(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + 'Z';
}

export type Verdict = 'allowed' | 'would-deny' | 'denied';

/** The verdict class of a decision: monitor-mode denies are forwarded and only logged. */
export function verdictOf(action: string, mode: string): Verdict {
  if (action !== 'deny') return 'allowed';
  return mode === 'monitor' ? 'would-deny' : 'denied';
}

/** The what-if request for a recorded flow (ICMP: the type travels in `port`). */
export function flowSpec(f: { src: string; dst: string; proto: number; sport: number; dport: number }) {
  const icmp = f.proto === 1 || f.proto === 58;
  return icmp
    ? { src: f.src, dst: f.dst, proto: protoName(f.proto), port: f.sport, sport: 0 }
    : { src: f.src, dst: f.dst, proto: protoName(f.proto), port: f.dport, sport: f.sport };
}

/** The API's rendering of a flow key (`Explanation.flow`, FlowKey's Display in the classifier). */
export function flowKeyText(f: { src: string; dst: string; proto: number; sport: number; dport: number }): string {
  const icmp = f.proto === 1 || f.proto === 58;
  const [sp, dp] = icmp ? [f.sport, 0] : [f.sport, f.dport];
  const a = (ip: string) => (ip.includes(':') ? `[${ip}]` : ip);
  return `${a(f.src)}:${sp} -> ${a(f.dst)}:${dp} proto ${f.proto}`;
}
