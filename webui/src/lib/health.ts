// Presentation of `GET /api/v1/health` (control/src/api/health.rs): the colour of each state
// and the short texts of the dashboard's health panel.
import type { HealthReport, InferenceHealth, WorkerHealth } from './api/types';
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
