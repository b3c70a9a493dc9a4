// Rates from two counter snapshots, and a bounded time series for the dashboard's charts.
import type { CountersSnapshot } from './api/types';

export interface PortRate {
  port: string;
  rxPps: number;
  txPps: number;
  rxBps: number; // bits per second
  txBps: number;
}

export function portRates(prev: CountersSnapshot, cur: CountersSnapshot, dtMs: number): PortRate[] {
  const dt = dtMs / 1000;
  if (dt <= 0) return [];
  const before = new Map(prev.ports.map((p) => [p.port, p]));
  return cur.ports.map((p) => {
    const b = before.get(p.port);
    // A counter that went backwards (restart) yields no rate rather than a negative one.
    const d = (now: number, then: number | undefined) => (then === undefined || now < then ? 0 : now - then);
    return {
      port: p.port,
      rxPps: d(p.rx_packets, b?.rx_packets) / dt,
      txPps: d(p.tx_packets, b?.tx_packets) / dt,
      rxBps: (d(p.rx_bytes, b?.rx_bytes) * 8) / dt,
      txBps: (d(p.tx_bytes, b?.tx_bytes) * 8) / dt,
    };
  });
}

export function dropRates(prev: CountersSnapshot, cur: CountersSnapshot, dtMs: number): Map<string, number> {
  const dt = dtMs / 1000;
  const before = new Map(prev.drops.map((d) => [d.reason, d.packets]));
  const out = new Map<string, number>();
  for (const d of cur.drops) {
    const b = before.get(d.reason);
    out.set(d.reason, dt > 0 && b !== undefined && d.packets >= b ? (d.packets - b) / dt : 0);
  }
  return out;
}

/** Parallel arrays (uPlot's data shape), at most `cap` points per series. */
export class Series {
  readonly t: number[] = [];
  readonly ys: number[][];
  constructor(
    readonly names: string[],
    readonly cap = 150,
  ) {
    this.ys = names.map(() => []);
  }
  push(tSec: number, values: number[]): void {
    this.t.push(tSec);
    values.forEach((v, i) => this.ys[i]?.push(v));
    if (this.t.length > this.cap) {
      this.t.shift();
      this.ys.forEach((y) => y.shift());
    }
  }
  data(): number[][] {
    return [this.t, ...this.ys];
  }
}

export interface Tally {
  key: string;
  packets: number;
  bytes: number;
  flows: number;
}

/** Top `n` keys by bytes. */
export function top<T>(items: T[], key: (x: T) => string | null, weight: (x: T) => [number, number], n = 5): Tally[] {
  const m = new Map<string, Tally>();
  for (const x of items) {
    const k = key(x);
    if (k === null) continue;
    const [packets, bytes] = weight(x);
    const t = m.get(k) ?? { key: k, packets: 0, bytes: 0, flows: 0 };
    t.packets += packets;
    t.bytes += bytes;
    t.flows++;
    m.set(k, t);
  }
  return [...m.values()].sort((a, b) => b.bytes - a.bytes || a.key.localeCompare(b.key)).slice(0, n);
}
