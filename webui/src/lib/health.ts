// Presentation of `GET /api/v1/health` (control/src/api/health.rs): the colour of each state
// and the short texts of the dashboard's health panel.
import type { FlowTableHealth, HealthReport, InferenceHealth, RouterHealth, WorkerHealth } from './api/types';
import { rate } from './format';

/** Badge class: green, amber or red. */
export type Tone = 'ok' | 'warn' | 'bad' | 'info';

export function statusTone(s: HealthReport['status']): Tone {
  return s === 'ok' ? 'ok' : s === 'degraded' ? 'warn' : 'bad';
}

/** A stalled worker is red (it handles no packets); a stopped one amber (shutdown). */
export function workerTone(w: WorkerHealth): Tone {
  return w.state === 'running' ? 'ok' : w.state === 'stalled' ? 'bad' : 'warn';
}

export function inferenceTone(i: InferenceHealth): Tone {
  switch (i.state) {
    case 'running':
      return 'ok';
    case 'off':
      return 'info';
    case 'degraded':
      return 'warn';
    default:
      return 'bad';
  }
}

/** "0.4 s", "7 s", "3 min". */
export function ageText(ms: number): string {
  if (ms < 1000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  const m = Math.round(s / 60);
  return m < 120 ? `${m} min` : `${Math.round(m / 60)} h`;
}

export function workerName(w: WorkerHealth): string {
  return w.lcore == null ? `worker ${w.id}` : `worker ${w.id} · lcore ${w.lcore}`;
}

/** "1.4 M polls/s", "250 rec/s". */
export function perSecond(n: number, noun: string): string {
  return `${rate(n, '').trim()} ${noun}/s`;
}

/** "12,345"; a missing counter (older server) as "0". */
export function count(n: number | null | undefined): string {
  return (n ?? 0).toLocaleString('en-US');
}

/** Flow-table occupancy at or above this share of its capacity is amber. */
export const OCCUPANCY_WARN = 0.9;
/** Half-open flows are amber when they are at least this share of the active flows … */
export const HALF_OPEN_SHARE_WARN = 0.5;
/** … and at least this share of the capacity (a few half-open flows on an idle table are normal). */
export const HALF_OPEN_MIN_OF_CAPACITY = 0.05;

export interface Occupancy {
  /** "18.8 %", "93 %"; null without a capacity. */
  percent: string | null;
  /** The table is nearly full. */
  full: boolean;
  /** Half-open flows dominate (a SYN flood or scan filling the table). */
  halfOpen: boolean;
}

/**
 * How full a worker's flow table is. The percentage is rounded down from 10 % on, so it never
 * reads "90 %" while the table is below the warning threshold; tolerates missing fields.
 */
export function occupancy(f: Partial<FlowTableHealth>): Occupancy {
  const active = f.active ?? 0;
  const cap = f.capacity ?? 0;
  const half = f.half_open ?? 0;
  const share = cap > 0 ? active / cap : null;
  const pct = share == null ? null : share * 100;
  return {
    percent: pct == null ? null : `${pct < 10 ? pct.toFixed(1) : Math.floor(pct)} %`,
    full: share != null && share >= OCCUPANCY_WARN,
    halfOpen: half > 0 && half >= HALF_OPEN_SHARE_WARN * active && cap > 0 && half >= HALF_OPEN_MIN_OF_CAPACITY * cap,
  };
}

/** The neighbour table is full: next hops beyond it cannot be resolved. */
export function neighboursFull(r: Partial<RouterHealth>): boolean {
  return (r.neighbour_capacity ?? 0) > 0 && (r.neighbours ?? 0) >= (r.neighbour_capacity ?? 0);
}
