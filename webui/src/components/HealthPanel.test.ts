import { describe, expect, it } from 'vitest';
import { render } from 'svelte/server';
import HealthPanel from './HealthPanel.svelte';
import type { FlowTableHealth, HealthReport, InferenceHealth, RouterHealth, WorkerHealth } from '../lib/api/types';
import { ageText, occupancy } from '../lib/health';

const worker = (o: Partial<WorkerHealth>): WorkerHealth => ({
  id: 0, lcore: 1, state: 'running', polls: 1000, polls_per_s: 1_400_000, last_progress_age_ms: 0, ...o,
});
const inference = (o: Partial<InferenceHealth>): InferenceHealth => ({
  state: 'running', mode: 'shadow', models: [{ id: 'flow-if-v1', hash: 'ab', threshold: 0.6 }], error: null,
  records: 4096, batches: 16, records_per_s: 250, last_inference_age_ms: 400, events_dropped: 0, lost_records: 0,
  score_errors: 0, panics: 0, stalls: 0, restarts: 0,
  sampler_records: 4100, sampler_ring_full: 0, sampler_sketch_evictions: 0, sampler_spread_lost: 0, sampler_slab_full: 0,
  repeats: 0, calibrations: 0, ...o,
});
const flows = (o: Partial<FlowTableHealth>): FlowTableHealth => ({
  active: 12_345, capacity: 65_536, half_open: 120, inserted: 1_000_000, expired: 987_000, evicted_half_open: 0, ...o,
});
const router = (o: Partial<RouterHealth>): RouterHealth => ({
  echo_replies: 42, arp_replies: 7, neighbour_adverts: 3, time_exceeded_sent: 5, time_exceeded_suppressed: 2,
  solicitations: 9, tx_ring_full: 0, neighbours_learnt: 11, neighbours: 4, neighbour_capacity: 256, local_frames: 60, ...o,
});
const report = (o: Partial<HealthReport>): HealthReport => ({
  status: 'ok', reasons: [], dataplane: true, workers: [worker({}), worker({ id: 1, lcore: 2 })],
  inference: inference({}), stall_after_ms: 3000, ts_ms: 0, ...o,
});
const html = (health: HealthReport | null, error: string | null = null) => render(HealthPanel, { props: { health, error } }).body;
/** The detail rows of one kind (flows, router), as [data-warn, text] pairs, tags stripped. */
const details = (h: string, kind: string) =>
  [...h.matchAll(new RegExp(`data-testid="health-${kind}" data-warn="(\\w+)">(.*?)</tr>`, 'gs'))].map((m) => [
    m[1],
    m[2].replace(/<[^>]*>/g, '').replace(/\s+/g, ' ').trim(),
  ]);
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
    expect(quiet).not.toContain('missed by the spread sketches');
    const lost = html(report({ inference: inference({ sampler_spread_lost: 4096 }) }));
    expect(lost).toMatch(/color:var\(--warn\)"[^>]*>4,096 new flows missed by the spread sketches/);
  });

  it("shows a bridge worker's flow table occupancy and no router line", () => {
    const h = html(report({ workers: [worker({ flows: flows({}), router: null })] }));
    const [f, ...more] = details(h, 'flows');
    expect(more).toEqual([]);
    expect(f[0]).toBe('false');
    expect(f[1]).toBe('flows 12,345 / 65,536 (18 %) · 120 half-open · 987,000 expired · 0 evicted');
    expect(h).toContain('1,000,000 flows created since start');
    expect(h).not.toContain('health-router');
    expect(h).not.toContain('var(--warn)');
    // The worker row itself is unchanged (the e2e tests read its text).
    expect(rows(h, 'worker')[0][1]).toContain('1.4 M polls/s');
  });

  it("shows a routing worker's router counters and highlights a full transmit ring", () => {
    const quiet = html(report({ workers: [worker({ flows: flows({}), router: router({}) })] }));
    const [r] = details(quiet, 'router');
    expect(r[0]).toBe('false');
    expect(r[1]).toBe('router · 42 pings answered · 7 ARP / 3 ND answers · time exceeded 5 sent, 2 suppressed · neighbours 4 / 256');
    expect(quiet).not.toContain('tx ring full');
    const busy = html(report({ workers: [worker({ flows: flows({}), router: router({ tx_ring_full: 1500, neighbours: 256 }) })] }));
    const [b] = details(busy, 'router');
    expect(b[0]).toBe('true');
    expect(b[1]).toContain('1,500 tx ring full');
    expect(busy).toMatch(/color:var\(--warn\)"[^>]*>1,500 tx ring full/);
    expect(busy).toMatch(/color: var\(--warn\);"[^>]*>neighbours\s+256 \/ 256/);
  });

  it('warns when the flow table is at least 90 % full, or mostly half-open, or evicts', () => {
    const below = html(report({ workers: [worker({ flows: flows({ active: 58_982, capacity: 65_536 }) })] }));
    expect(details(below, 'flows')[0]).toEqual(['false', expect.stringContaining('58,982 / 65,536 (89 %)')]);
    const full = html(report({ workers: [worker({ flows: flows({ active: 58_983, capacity: 65_536 }) })] }));
    expect(details(full, 'flows')[0]).toEqual(['true', expect.stringContaining('58,983 / 65,536 (90 %)')]);
    expect(full).toMatch(/color: var\(--warn\);"[^>]*>\s*58,983 \/ 65,536 \(90 %\)/);
    const syn = html(report({ workers: [worker({ flows: flows({ active: 20_000, half_open: 15_000, evicted_half_open: 321 }) })] }));
    expect(details(syn, 'flows')[0][0]).toBe('true');
    expect(syn).toMatch(/color: var\(--warn\);"[^>]*>15,000 half-open/);
    expect(syn).toMatch(/color: var\(--warn\);"[^>]*>321 evicted/);
    // A few half-open flows on a nearly idle table are normal.
    expect(occupancy(flows({ active: 10, half_open: 8 })).halfOpen).toBe(false);
    expect(occupancy(flows({ active: 0, capacity: 0 }))).toEqual({ percent: null, full: false, halfOpen: false });
    expect(occupancy(flows({ active: 300, capacity: 65_536 })).percent).toBe('0.5 %');
  });

  it('shows repeats suppressed and calibrations of the inference thread', () => {
    const h = html(report({ inference: inference({ repeats: 1234, calibrations: 1 }) }));
    expect(h).toMatch(/1,234 repeats suppressed/);
    expect(h).toMatch(/1\s+calibration</);
    expect(html(report({ inference: inference({ calibrations: 3 }) }))).toMatch(/3\s+calibrations/);
  });

  it('renders an older server without flows, router, repeats or calibrations', () => {
    const old = report({ workers: [worker({}), worker({ id: 1, lcore: 2, flows: null, router: null })] });
    const inf = { ...old.inference } as Partial<InferenceHealth>;
    delete inf.repeats;
    delete inf.calibrations;
    const h = html({ ...old, inference: inf as InferenceHealth });
    expect(rows(h, 'worker').length).toBe(2);
    expect(h).not.toContain('health-flows');
    expect(h).not.toContain('health-router');
    expect(h).not.toContain('repeats suppressed');
    expect(h).not.toContain('calibration');
    expect(h).toContain('4,100 sampled');
    // A partial flow or router object (a field missing) renders with zeros instead of failing.
    const partial = html(
      report({
        workers: [
          worker({
            flows: { active: 5 } as FlowTableHealth,
            router: { echo_replies: 1 } as RouterHealth,
          }),
        ],
      }),
    );
    expect(details(partial, 'flows')[0]).toEqual(['false', 'flows 5 / 0 · 0 half-open · 0 expired · 0 evicted']);
    expect(details(partial, 'router')[0][1]).toContain('1 pings answered · 0 ARP / 0 ND answers');
  });

  it('formats ages', () => {
    expect(ageText(400)).toBe('0.4 s');
    expect(ageText(7000)).toBe('7 s');
    expect(ageText(600_000)).toBe('10 min');
  });
});
