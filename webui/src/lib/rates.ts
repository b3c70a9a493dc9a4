// Rates from two counter snapshots, and a bounded time series for the dashboard's charts.
import type { CountersSnapshot, FlowRecord } from './api/types';
import { bytes as fmtBytes, flowId } from './format';

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

/** Why a talker's open flows show no bytes yet (the tooltip of "not counted yet"). */
export const PENDING_TITLE =
  'open flows: the data plane reports their traffic within its update interval (10 s by default), when TCP closes, and when they end';

/**
 * Top `n` keys by bytes, then packets. Each flow counts once; its packets and bytes are the sum
 * of its records' (a `start` reports none yet, each `update` what the flow carried since its
 * previous report, the `end` the rest), so every byte is counted once and a window counts the
 * traffic reported in it. A flow with only a start here is `pending`: its first report is not
 * in yet, and showing it as "0 B" would rank a host by what was not counted yet.
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

/** What the flows table shows in a record's packets and bytes cells. */
export interface RowCounters {
  packets: string;
  bytes: string;
  /** The flow's total, under the bytes (an `update`, or an `end` that followed updates). */
  total?: string;
  /** Tooltip: what the numbers mean for this kind of record. */
  title: string;
}

/**
 * The packets and bytes cells of one flow record: `null` for a `start` (nothing counted yet);
 * an `update` or an `end` that followed updates shows what it adds (`+…`) and the flow's total.
 */
export function rowCounters(f: FlowRecord): RowCounters | null {
  switch (f.kind) {
    case 'start':
      return null;
    case 'update':
      return {
        packets: `+${f.packets}`,
        bytes: `+${fmtBytes(f.bytes)}`,
        total: `${fmtBytes(f.total_bytes)} so far`,
        title: 'an open flow: its traffic since its previous report, and its total so far',
      };
    case 'end':
      if (f.total_bytes > f.bytes || f.total_packets > f.packets)
        return {
          packets: `+${f.packets}`,
          bytes: `+${fmtBytes(f.bytes)}`,
          total: `${fmtBytes(f.total_bytes)} in all`,
          title: 'the flow ended: its traffic since its last update, and its total',
        };
      return { packets: String(f.packets), bytes: fmtBytes(f.bytes), title: 'the flow ended: its total' };
    default:
      return { packets: String(f.packets), bytes: fmtBytes(f.bytes), title: 'refused packets since the flow\'s previous deny record' };
  }
}
