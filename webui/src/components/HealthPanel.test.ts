import { describe, expect, it } from 'vitest';
import { render } from 'svelte/server';
import HealthPanel from './HealthPanel.svelte';
import type { HealthReport, InferenceHealth, WorkerHealth } from '../lib/api/types';
import { ageText } from '../lib/health';

const worker = (o: Partial<WorkerHealth>): WorkerHealth => ({
  id: 0, lcore: 1, state: 'running', polls: 1000, polls_per_s: 1_400_000, last_progress_age_ms: 0, ...o,
});
const inference = (o: Partial<InferenceHealth>): InferenceHealth => ({
  state: 'running', mode: 'shadow', models: [{ id: 'flow-if-v1', hash: 'ab', threshold: 0.6 }], error: null,
  records: 4096, batches: 16, records_per_s: 250, last_inference_age_ms: 400, events_dropped: 0, lost_records: 0,
  score_errors: 0, panics: 0, stalls: 0, restarts: 0,
  sampler_records: 4100, sampler_ring_full: 0, sampler_sketch_evictions: 0, sampler_slab_full: 0,
  repeats: 0, calibrations: 0, ...o,
});
const report = (o: Partial<HealthReport>): HealthReport => ({
  status: 'ok', reasons: [], dataplane: true, workers: [worker({}), worker({ id: 1, lcore: 2 })],
  inference: inference({}), stall_after_ms: 3000, ts_ms: 0, ...o,
});
const html = (health: HealthReport | null, error: string | null = null) => render(HealthPanel, { props: { health, error } }).body;
/** The rows of one kind, as [state, text] pairs. */
const rows = (h: string, kind: string) =>
  [...h.matchAll(new RegExp(`data-testid="health-${kind}" data-state="(\\w+)">(.*?)</tr>`, 'gs'))].map((m) => [m[1], m[2]]);

describe('health panel', () => {
  it('shows running workers and inference in green with rate and age', () => {
    const h = html(report({}));
    expect(h).toContain('data-status="ok"');
    expect(h).toMatch(/class="badge ok[^"]*"[^>]*data-testid="health-status"[^>]*>ok</);
    const ws = rows(h, 'worker');
    expect(ws.map((w) => w[0])).toEqual(['running', 'running']);
    expect(ws[1][1]).toContain('worker 1 · lcore 2');
    expect(ws[0][1]).toContain('1.4 M polls/s');
    expect(ws[0][1]).toContain('badge ok');
    const [inf] = rows(h, 'inference');
    expect(inf[0]).toBe('running');
    expect(inf[1]).toContain('inference · shadow');
    expect(inf[1]).toContain('250 rec/s');
    expect(inf[1]).toContain('0.4 s');
    expect(h).toContain('models: flow-if-v1');
    expect(h).not.toContain('health-reasons');
  });

  it('marks a stalled worker red, a degraded inference amber, and lists the reasons', () => {
    const h = html(
      report({
        status: 'degraded',
        reasons: ['worker 1 (lcore 2) has not polled for 7 s', 'inference thread: no model loaded'],
        workers: [worker({}), worker({ id: 1, lcore: 2, state: 'stalled', polls_per_s: 0, last_progress_age_ms: 7000 })],
        inference: inference({ state: 'degraded', models: [], last_inference_age_ms: null, records_per_s: null }),
      }),
    );
    expect(h).toMatch(/class="badge warn[^"]*"[^>]*data-testid="health-status"[^>]*>degraded</);
    expect(h).toContain('worker 1 (lcore 2) has not polled for 7 s');
    expect(h).toContain('inference thread: no model loaded');
    const ws = rows(h, 'worker');
    expect(ws[1][0]).toBe('stalled');
    expect(ws[1][1]).toContain('badge bad');
    expect(ws[1][1]).toContain('7 s');
    const [inf] = rows(h, 'inference');
    expect(inf[1]).toContain('badge warn');
    expect(inf[1]).toContain('nothing scored yet');
    expect(h).toContain('no model loaded');
  });

  it('shows down in red, ML off in grey, no data plane, and an error', () => {
    const down = html(report({ status: 'down', reasons: ['the data plane has no workers'], workers: [] }));
    expect(down).toMatch(/class="badge bad[^"]*"[^>]*data-testid="health-status"[^>]*>down</);
    expect(down).toContain('No workers started.');
    const off = html(report({ dataplane: false, workers: [], inference: inference({ state: 'off', mode: '', models: [] }) }));
    expect(off).toContain('No data plane in this process.');
    const [inf] = rows(off, 'inference');
    expect(inf[0]).toBe('off');
    expect(inf[1]).toContain('badge info');
    expect(inf[1]).toContain('ML not configured');
    expect(off).not.toContain('health-models');
    const failed = html(report({ inference: inference({ state: 'failed', models: [], error: 'did not start: no model' }) }));
    expect(rows(failed, 'inference')[0][1]).toContain('badge bad');
    expect(html(null, 'HTTP 500')).toContain('Health: HTTP 500');
    expect(html(null)).toContain('Checking workers and inference');
  });

  it("counts the workers' sampled records and warns when their rings to the inference thread overflow", () => {
    const quiet = html(report({}));
    expect(quiet).toContain('4,100 sampled');
    expect(quiet).not.toContain('dropped by full sampler rings');
    const full = html(report({ inference: inference({ sampler_records: 9000, sampler_ring_full: 1234 }) }));
    expect(full).toContain('9,000 sampled');
    expect(full).toMatch(/color:var\(--warn\)"[^>]*>1,234 dropped by full sampler rings/);
  });

  it('formats ages', () => {
    expect(ageText(400)).toBe('0.4 s');
    expect(ageText(7000)).toBe('7 s');
    expect(ageText(600_000)).toBe('10 min');
  });
});
