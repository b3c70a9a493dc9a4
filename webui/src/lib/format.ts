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
/** One flow's identity across its records (start, end, denies): its 5-tuple. */
export function flowId(f: { src: string; dst: string; proto: number; sport: number; dport: number }): string {
  return `${f.src}|${f.dst}|${f.proto}|${f.sport}|${f.dport}`;
}

export function flowKeyText(f: { src: string; dst: string; proto: number; sport: number; dport: number }): string {
  const icmp = f.proto === 1 || f.proto === 58;
  const [sp, dp] = icmp ? [f.sport, 0] : [f.sport, f.dport];
  const a = (ip: string) => (ip.includes(':') ? `[${ip}]` : ip);
  return `${a(f.src)}:${sp} -> ${a(f.dst)}:${dp} proto ${f.proto}`;
}

/** How a flow's verdict reads before its clause (`denied by`, `would be denied (monitor) by`). */
export function decidedBy(f: { action: string; mode: string }): string {
  if (f.action === 'inspect') return 'inspected (L7) under';
  if (f.action === 'allow') return 'allowed by';
  return f.mode === 'monitor' ? 'would be denied (monitor) by' : 'denied by';
}

/**
 * The reason a flow record carries, in one line: `denied by conduit hmi-to-plc (allow) ot-hmi ->
 * ot-plc: tcp/502 (demo: spec.conduits[3].services[0]), rule 7, revision 7f3a12bc`. The record
 * names its clause itself (no what-if call per row); an empty clause (revision not known to the
 * control plane) reads as the bare rule.
 */
export function reasonOf(f: { action: string; mode: string; rule: number; revision: string; clause?: string; l7?: string; l7_reason?: string }): string {
  const why = f.l7_reason ? `: ${f.l7_reason}` : '';
  const by = f.clause ? `${decidedBy(f)} ${f.clause}${why}, rule ${f.rule}` : `rule ${f.rule}${why}`;
  const l7 = f.l7 ? ` [${f.l7}]` : '';
  return `${by}${l7}, revision ${shortHash(f.revision)}`;
}

/** The conduit index a clause text or path names (`spec.conduits[3]...` → 3). */
export function conduitIndex(clause: string | undefined): number | undefined {
  const m = clause?.match(/spec\.conduits\[(\d+)\]/);
  return m ? Number(m[1]) : undefined;
}

/** A time window as the flows API takes it: `since`/`until` in Unix ms. */
export interface TimeWindow {
  since?: number;
  until?: number;
}

/**
 * The window of a preset (`'0'`: everything held, else seconds back from `now`) or, for
 * `'custom'`, of two `datetime-local` values (local time; either may be empty).
 */
export function timeWindow(preset: string, from: string, to: string, now: number = Date.now()): TimeWindow {
  if (preset === 'custom') {
    const ms = (v: string) => (v ? new Date(v).getTime() : undefined);
    const w: TimeWindow = { since: ms(from), until: ms(to) };
    return { since: Number.isFinite(w.since) ? w.since : undefined, until: Number.isFinite(w.until) ? w.until : undefined };
  }
  const s = Number(preset);
  return s > 0 ? { since: now - s * 1000 } : {};
}

/** A record's clause split into its words and where it sits (`demo: spec.conduits[0]...`). */
export function clauseParts(clause: string): { text: string; where: string } {
  const m = clause.match(/^(.*) \(([^()]*: spec\.[^()]*)\)$/);
  return m ? { text: m[1], where: m[2] } : { text: clause, where: '' };
}
