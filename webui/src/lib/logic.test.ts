import { describe, expect, it } from 'vitest';
import { contains, parseIp, parsePrefix } from './cidr';
import { marks, offsetOf } from './editorErrors';
import { age, clauseParts, conduitIndex, countdown, flowKeyText, flowSpec, reasonOf, timeWindow, verdictOf } from './format';
import { anomalyLine, buildMap, edgeWidth, filterFlows } from './graph';
import { positions } from './layout';
import { dropRates, portRates, rowCounters, Series, top } from './rates';
import { can, navFor } from './roles';
import { hunks, lineDiff } from './textdiff';
import { clearDraft, loadDraft, saveDraft } from './draft';
import { describeProblem, qs, toProblem } from './api/client';
import type { FlowRecord, PolicyDoc } from './api/types';

const flow = (o: Partial<FlowRecord>): FlowRecord => ({
  ts_ms: 1000, kind: 'end', src: '10.10.1.20', dst: '10.10.5.10', proto: 6, sport: 40000, dport: 443, action: 'allow',
  mode: 'enforce', rule: 3, revision: 'abc', packets: 10, bytes: 1000, total_packets: 10, total_bytes: 1000, clause: '', l7: '', l7_reason: '', ...o,
});

const doc: PolicyDoc = {
  spec: {
    defaults: { mode: 'enforce' },
    ipSets: [{ name: 'app', addresses: ['10.10.5.10'] }],
    endpoints: [
      { name: 'plc-1', address: '10.30.1.10', labels: { role: 'plc' } },
      { name: 'plc-9', address: '10.30.1.90', labels: { role: 'plc', lifecycle: 'old' } },
    ],
    zones: [
      { name: 'it', subnets: ['10.10.0.0/16'] },
      { name: 'ehr-app', ipSets: ['app'] },
      { name: 'plc', selector: { matchLabels: { role: 'plc' }, matchExpressions: [{ key: 'lifecycle', operator: 'DoesNotExist' }] } },
      { name: 'hmi', mode: 'monitor', subnets: ['10.30.2.0/24'] },
    ],
  },
};

describe('cidr', () => {
  it('parses and matches v4 and v6', () => {
    expect(parseIp('10.0.0.1')?.n).toBe(0x0a000001n);
    expect(parseIp('10.0.0.256')).toBeNull();
    expect(parseIp('1.2.3')).toBeNull();
    expect(parseIp('::1')?.n).toBe(1n);
    expect(parseIp('2001:db8::1')?.v6).toBe(true);
    expect(parseIp('1::2::3')).toBeNull();
    const p = parsePrefix('10.20.0.0/24')!;
    expect(contains(p, '10.20.0.255')).toBe(true);
    expect(contains(p, '10.20.1.0')).toBe(false);
    expect(contains(p, '::1')).toBe(false);
    expect(parsePrefix('10.0.0.0/33')).toBeNull();
    expect(contains(parsePrefix('2001:db8::/32')!, '2001:db8:ffff::1')).toBe(true);
    expect(contains(parsePrefix('0.0.0.0/0')!, '192.0.2.1')).toBe(true);
  });
});

describe('map model', () => {
  it('places hosts in the most specific zone, resolves ip sets and label selectors', () => {
    const m = buildMap(doc, [flow({}), flow({ src: '10.30.2.5', dst: '10.30.1.10', dport: 502, action: 'deny', mode: 'monitor' })]);
    const zoneOf = (ip: string) => m.hosts.find((h) => h.ip === ip)?.zone;
    expect(zoneOf('10.10.5.10')).toBe('zone:ehr-app'); // in `it` too, but the ip set is more specific
    expect(m.hosts.find((h) => h.ip === '10.10.5.10')?.zones).toEqual(['ehr-app', 'it']);
    expect(zoneOf('10.30.1.10')).toBe('zone:plc');
    expect(zoneOf('10.30.1.90')).toBe('zone:unzoned'); // excluded by DoesNotExist
    expect(m.zones.find((z) => z.name === 'hmi')?.mode).toBe('monitor');
    expect(m.edges.map((e) => e.verdict).sort()).toEqual(['allowed', 'would-deny']);
  });

  it('aggregates flows into one edge per pair and verdict', () => {
    const m = buildMap(doc, [flow({}), flow({ sport: 40001, bytes: 500 }), flow({ dport: 8443, action: 'deny' })]);
    expect(m.edges).toHaveLength(2);
    const allowed = m.edges.find((e) => e.verdict === 'allowed')!;
    expect([allowed.flows, allowed.bytes, allowed.services]).toEqual([2, 1500, ['tcp/443']]);
    // A flow's start and end are one flow on its edge.
    const once = buildMap(doc, [flow({ kind: 'start', packets: 0, bytes: 0 }), flow({})]);
    expect([once.edges[0].flows, once.edges[0].bytes]).toEqual([1, 1000]);
  });

  it('filters by zone, protocol, port, verdict and time', () => {
    const fs = [flow({}), flow({ proto: 17, dport: 53 }), flow({ action: 'deny', ts_ms: 10 }), flow({ src: '10.30.2.5', dst: '10.30.2.6' })];
    const z = (ip: string) => (ip.startsWith('10.10.') ? ['it'] : ['hmi']);
    expect(filterFlows(fs, { proto: 'udp' }, z)).toHaveLength(1);
    expect(filterFlows(fs, { port: 443 }, z)).toHaveLength(3);
    expect(filterFlows(fs, { verdict: 'denied' }, z)).toHaveLength(1);
    expect(filterFlows(fs, { sinceMs: 500 }, z)).toHaveLength(3);
    expect(filterFlows(fs, { zone: 'hmi' }, z)).toHaveLength(1);
  });

  it('the draft view recolours edges by the staged decision', () => {
    const m = buildMap(doc, [flow({})], {}, () => 'denied');
    expect(m.edges[0].verdict).toBe('denied');
  });

  it('lays out every node, zones on a ring', () => {
    const m = buildMap(doc, [flow({}), flow({ src: '10.30.2.5', dst: '10.30.1.10' })]);
    const pos = positions(m);
    for (const h of m.hosts) expect(pos.has(h.id)).toBe(true);
    const xs = [...pos.values()].map((p) => p.x);
    expect(Math.max(...xs) - Math.min(...xs)).toBeGreaterThan(100);
  });

  it('edge width grows with volume and stays bounded', () => {
    expect(edgeWidth(0)).toBe(1);
    expect(edgeWidth(1e6)).toBeGreaterThan(edgeWidth(1e3));
    expect(edgeWidth(1e15)).toBe(8);
  });
});

describe('map anomalies', () => {
  const a = (src: string, dst: string, state: string, summary: string) => ({ flow: { src, dst }, state, summary, model_id: 'm1' });
  const list = [a('10.0.0.1', '10.0.0.2', 'open', 'newest'), a('10.0.0.1', '10.0.0.2', 'dismissed', 'older'), a('10.0.0.3', '10.0.0.1', 'open', 'inbound')];
  it('counts the alerts of an edge, newest first', () => {
    expect(anomalyLine(list, '10.0.0.1', '10.0.0.2')).toBe('anomalies: 2 (1 open), latest: newest (m1)');
    expect(anomalyLine(list, '10.0.0.2', '10.0.0.1')).toBe('anomalies: none');
  });
  it('counts a host\'s alerts in both directions', () => {
    expect(anomalyLine(list, '10.0.0.1')).toBe('anomalies: 3 (2 open), latest: newest (m1)');
    expect(anomalyLine(list, '10.0.0.9')).toBe('anomalies: none');
  });
  it('says when the appliance reports none', () => {
    expect(anomalyLine(null, '10.0.0.1')).toMatch(/no anomaly source/);
  });
});

describe('format', () => {
  it('classes verdicts, times and flow keys', () => {
    expect(verdictOf('deny', 'monitor')).toBe('would-deny');
    expect(verdictOf('deny', 'enforce')).toBe('denied');
    expect(verdictOf('inspect', 'enforce')).toBe('allowed');
    expect(countdown(10_000 + 125_000, 10_000)).toBe('2:05');
    expect(countdown(0, 10_000)).toBe('0:00');
    expect(age(0, 90_000)).toBe('1 min ago');
    const f = { src: '10.0.0.1', dst: '10.0.0.2', proto: 6, sport: 1234, dport: 80 };
    expect(flowKeyText(f)).toBe('10.0.0.1:1234 -> 10.0.0.2:80 proto 6');
    expect(flowKeyText({ ...f, src: '::1', dst: '::2' })).toBe('[::1]:1234 -> [::2]:80 proto 6');
    expect(flowSpec({ ...f, proto: 1, sport: 8, dport: 0 })).toEqual({ src: '10.0.0.1', dst: '10.0.0.2', proto: 'icmp', port: 8, sport: 0 });
    expect(flowKeyText({ ...f, proto: 1, sport: 8, dport: 0 })).toBe('10.0.0.1:8 -> 10.0.0.2:0 proto 1');
  });
});

describe('flow reasons and time windows', () => {
  it('renders the clause the record carries, with L7 label and revision', () => {
    const f = flow({
      action: 'deny', rule: 7, revision: '7f3a12bc99', l7: 'modbus',
      clause: 'conduit hmi-to-plc (allow) ot-hmi -> ot-plc: tcp/502 (demo: spec.conduits[3].services[0])',
    });
    expect(reasonOf(f)).toBe(
      'denied by conduit hmi-to-plc (allow) ot-hmi -> ot-plc: tcp/502 (demo: spec.conduits[3].services[0]), rule 7 [modbus], revision 7f3a12bc',
    );
    expect(reasonOf({ ...f, mode: 'monitor', l7: '' })).toMatch(/^would be denied \(monitor\) by conduit hmi-to-plc/);
    expect(reasonOf({ ...f, clause: '', l7: '' })).toBe('rule 7, revision 7f3a12bc');
    expect(reasonOf({ ...f, clause: 'conduit hmi-to-plc', l7_reason: 'modbus function 6 (write_single_register) not allowed' })).toBe(
      'denied by conduit hmi-to-plc: modbus function 6 (write_single_register) not allowed, rule 7 [modbus], revision 7f3a12bc',
    );
    expect(conduitIndex(f.clause)).toBe(3);
    expect(conduitIndex('default deny')).toBeUndefined();
    expect(conduitIndex(undefined)).toBeUndefined();
    expect(clauseParts(f.clause)).toEqual({
      text: 'conduit hmi-to-plc (allow) ot-hmi -> ot-plc: tcp/502',
      where: 'demo: spec.conduits[3].services[0]',
    });
    expect(clauseParts('default (no rule matched)')).toEqual({ text: 'default (no rule matched)', where: '' });
  });
  it('turns presets and custom bounds into since/until', () => {
    const now = 1_000_000_000;
    expect(timeWindow('0', '', '', now)).toEqual({});
    expect(timeWindow('300', '', '', now)).toEqual({ since: now - 300_000 });
    const w = timeWindow('custom', '2026-11-26T04:00:00', '', now);
    expect(w.since).toBe(new Date('2026-11-26T04:00:00').getTime());
    expect(w.until).toBeUndefined();
    expect(timeWindow('custom', 'garbage', '2026-11-26T05:00', now)).toEqual({ since: undefined, until: new Date('2026-11-26T05:00').getTime() });
  });
});

describe('rates', () => {
  const snap = (rx: number, drops: number) => ({
    ports: [{ port: 'p0', rx_packets: rx, rx_bytes: rx * 100, tx_packets: rx, tx_bytes: rx * 100 }],
    drops: [{ reason: 'policy-deny', packets: drops }],
  });
  it('computes per-second rates and never negative ones', () => {
    const r = portRates(snap(100, 0), snap(300, 0), 2000)[0];
    expect([r.rxPps, r.rxBps]).toEqual([100, 80_000]);
    expect(portRates(snap(300, 0), snap(100, 0), 1000)[0].rxPps).toBe(0); // counters reset
    expect(dropRates(snap(0, 10), snap(0, 30), 1000).get('policy-deny')).toBe(20);
  });
  it('keeps a bounded series and ranks top talkers', () => {
    const s = new Series(['a'], 3);
    for (let i = 0; i < 5; i++) s.push(i, [i * 10]);
    expect(s.data()).toEqual([[2, 3, 4], [20, 30, 40]]);
    const t = top([flow({}), flow({ src: 'b', bytes: 5000 }), flow({ sport: 40001 })], (f) => f.src, 1);
    expect(t).toEqual([{ key: 'b', packets: 10, bytes: 5000, flows: 1, pending: 0 }]);
  });

  it('ranks talkers by the bytes their flows reported, each flow once, open ones pending', () => {
    // As /api/v1/flows reports a web fetch: a start (no counters yet), then its end (totals).
    const start = (src: string, sport: number) => flow({ kind: 'start', src, sport, packets: 0, bytes: 0 });
    const end = (src: string, sport: number, bytes: number) => flow({ kind: 'end', src, sport, packets: 10, bytes });
    const window = [
      start('10.10.1.10', 1), start('10.10.1.11', 2), start('10.10.1.10', 3), start('10.10.1.12', 4),
      end('10.10.1.10', 1, 1500), end('10.10.1.11', 2, 13_000_000), end('10.10.1.10', 3, 1200),
    ];
    const t = top(window, (f) => f.src);
    expect(t.map((x) => [x.key, x.bytes, x.flows, x.pending])).toEqual([
      ['10.10.1.11', 13_000_000, 1, 0],
      ['10.10.1.10', 2700, 2, 0],
      ['10.10.1.12', 0, 1, 1], // open: not counted yet, shown as such rather than "0 B"
    ]);
    // A host with an open flow and an ended one: the ended one's bytes, one flow pending.
    const mixed = top([start('h', 1), start('h', 2), end('h', 1, 800)], (f) => f.src);
    expect(mixed).toEqual([{ key: 'h', packets: 10, bytes: 800, flows: 2, pending: 1 }]);
    // A long-lived session reports while open: its updates count (not pending), each byte once;
    // its end adds only what came after the last update.
    const update = (src: string, sport: number, bytes: number, total: number) =>
      flow({ kind: 'update', src, sport, packets: 5, bytes, total_packets: 0, total_bytes: total });
    const session = [start('db', 9), update('db', 9, 4000, 4000), update('db', 9, 6000, 10_000), start('hmi', 8)];
    expect(top(session, (f) => f.src).map((x) => [x.key, x.bytes, x.flows, x.pending])).toEqual([
      ['db', 10_000, 1, 0],
      ['hmi', 0, 1, 1],
    ]);
    const ended = [...session, flow({ kind: 'end', src: 'db', sport: 9, packets: 1, bytes: 500, total_bytes: 10_500 })];
    expect(top(ended, (f) => f.src)[0]).toMatchObject({ key: 'db', bytes: 10_500, flows: 1, pending: 0 });
    // A 60 s window that holds only the last update counts the traffic reported in it.
    expect(top([update('db', 9, 6000, 10_000)], (f) => f.src)[0]).toMatchObject({ bytes: 6000, pending: 0 });
    // Denied pairs with equal bytes rank by packets.
    const deny = (src: string, n: number) => Array.from({ length: n }, () => flow({ kind: 'deny', src, action: 'deny', packets: 1, bytes: 0 }));
    expect(top([...deny('a', 1), ...deny('z', 3)], (f) => f.src).map((x) => [x.key, x.packets, x.flows])).toEqual([
      ['z', 3, 1],
      ['a', 1, 1],
    ]);
  });
});

describe('flows table counters', () => {
  it('shows what each kind of record reports', () => {
    expect(rowCounters(flow({ kind: 'start', packets: 0, bytes: 0, total_packets: 0, total_bytes: 0 }))).toBeNull();
    expect(rowCounters(flow({ kind: 'update', packets: 7, bytes: 2500, total_packets: 40, total_bytes: 1_200_000 }))).toMatchObject({
      packets: '+7',
      bytes: '+2.5 kB',
      total: '1.2 MB so far',
    });
    // An end after updates: the rest and the total; an end without updates: its total.
    expect(rowCounters(flow({ kind: 'end', packets: 1, bytes: 60, total_packets: 41, total_bytes: 1_200_060 }))).toMatchObject({
      packets: '+1',
      bytes: '+60 B',
      total: '1.2 MB in all',
    });
    expect(rowCounters(flow({ kind: 'end', packets: 3, bytes: 900, total_packets: 3, total_bytes: 900 }))).toEqual({
      packets: '3',
      bytes: '900 B',
      title: 'the flow ended: its total',
    });
    expect(rowCounters(flow({ kind: 'deny', packets: 1, bytes: 0, total_packets: 0, total_bytes: 0 }))?.packets).toBe('1');
  });
});

describe('roles', () => {
  it('mirrors the API access table', () => {
    expect(can('viewer', 'write-policy')).toBe(false);
    expect(can('policy-author', 'write-policy')).toBe(true);
    expect(can('operator', 'rollback')).toBe(true);
    expect(can('policy-author', 'rollback')).toBe(false);
    expect(can('approver', 'confirm')).toBe(true);
    expect(can('auditor', 'audit')).toBe(true);
    expect(can(null, 'audit')).toBe(false);
    expect(navFor('viewer').map((n) => n.id)).not.toContain('audit');
    expect(navFor('admin').map((n) => n.id)).toContain('audit');
  });
});

describe('editor errors', () => {
  it('puts located errors at their line and the rest at the top', () => {
    const m = marks(
      [
        { field: 'policy.spec.zones[2].subnets[0]', message: 'bad', line: 3, column: 7 },
        { field: 'reason', message: 'empty' },
        { field: 'policy.x', message: 'far', line: 99 },
      ],
      10,
    );
    expect(m.map((x) => [x.line, x.column, x.located])).toEqual([[3, 7, true], [1, 1, false], [1, 1, false]]);
    expect(offsetOf('ab\ncd\nef', 2, 2)).toBe(4);
    expect(offsetOf('ab\ncd', 2, 99)).toBe(5);
    expect(offsetOf('ab', 5, 1)).toBe(2);
  });
});

describe('text diff', () => {
  it('marks added and removed lines with context hunks', () => {
    const d = lineDiff('a\nb\nc', 'a\nx\nc');
    expect(d).toEqual([{ op: ' ', text: 'a' }, { op: '-', text: 'b' }, { op: '+', text: 'x' }, { op: ' ', text: 'c' }]);
    expect(lineDiff('same', 'same').every((l) => l.op === ' ')).toBe(true);
    const long = Array.from({ length: 20 }, (_, i) => `l${i}`);
    const changed = [...long];
    changed[10] = 'changed';
    const h = hunks(lineDiff(long.join('\n'), changed.join('\n')), 1);
    expect(h[0]).toBeNull();
    expect(h.filter((x) => x && x.op !== ' ')).toHaveLength(2);
  });
});

describe('draft', () => {
  it('keeps the editor text across sessions in session storage', () => {
    const m = new Map<string, string>();
    const store = { getItem: (k: string) => m.get(k) ?? null, setItem: (k: string, v: string) => void m.set(k, v), removeItem: (k: string) => void m.delete(k) } as unknown as Storage;
    expect(loadDraft(store)).toBeNull();
    saveDraft({ text: 'spec: {}', base: 'h', savedMs: 1 }, store);
    expect(loadDraft(store)?.text).toBe('spec: {}');
    m.set('septa.policy.draft', '{broken');
    expect(loadDraft(store)).toBeNull();
    clearDraft(store);
    expect(loadDraft(store)).toBeNull();
  });
});

describe('api client helpers', () => {
  it('turns problems into readable sentences', () => {
    const p = toProblem(422, {
      type: 'urn:septa:problem:invalid-policy', title: 'Invalid policy', status: 422, detail: 'the policy has 1 problem(s)',
      errors: [{ field: 'policy.spec', message: 'bad', line: 4 }],
    });
    expect(describeProblem(p)).toBe('Invalid policy: the policy has 1 problem(s) (policy.spec line 4: bad)');
    expect(toProblem(502, '<html>gateway</html>').title).toBe('HTTP 502');
    expect(qs({ a: 1, b: undefined, c: '', d: 'x y' })).toBe('?a=1&d=x+y');
  });
});
