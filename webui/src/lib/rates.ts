// Rates from two counter snapshots, and a bounded time series for the dashboard's charts.
import type { CountersSnapshot, FlowRecord } from './api/types';
import { flowId } from './format';

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
  /** Distinct flows (5-tuples), however many records each has. */
  flows: number;
  /** Of those, flows with only a `start` record here: their traffic is not reported yet. */
  pending: number;
}

/**
 * Top `n` keys by bytes, then packets. Each flow counts once; its packets and bytes are the sum
 * of its records' (a `start` reports none yet, an `end` the flow's totals), so a flow is not
 * counted twice when both its start and its end are in `items`. A flow with only a start here
 * is `pending`: the data plane reports its counters when the flow leaves its table, and showing
 * it as "0 B" would rank a host by what was not counted yet.
 */
export function top(items: FlowRecord[], key: (x: FlowRecord) => string | null, n = 5): Tally[] {
  const m = new Map<string, { t: Tally; counted: Map<string, boolean> }>();
  for (const x of items) {
    const k = key(x);
    if (k === null) continue;
    let e = m.get(k);
    if (!e) {
      e = { t: { key: k, packets: 0, bytes: 0, flows: 0, pending: 0 }, counted: new Map() };
      m.set(k, e);
    }
    e.t.packets += x.packets;
    e.t.bytes += x.bytes;
    const id = flowId(x);
    e.counted.set(id, (e.counted.get(id) ?? false) || x.kind !== 'start');
  }
  const out = [...m.values()].map(({ t, counted }) => {
    t.flows = counted.size;
    t.pending = [...counted.values()].filter((c) => !c).length;
    return t;
  });
  return out.sort((a, b) => b.bytes - a.bytes || b.packets - a.packets || a.key.localeCompare(b.key)).slice(0, n);
}
