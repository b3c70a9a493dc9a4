import { describe, expect, it } from 'vitest';
import { render } from 'svelte/server';
import AuditTable from './AuditTable.svelte';
import type { AuditRecord } from '../lib/api/types';
import { auditFields, resultParts } from './audit';

const HASH = '9c0d'.repeat(16);
const PREV = '10c9'.repeat(16);
const long: AuditRecord = {
  seq: 7, ts_ms: Date.UTC(2026, 10, 26, 15, 46, 26, 123), actor: { kind: 'system', name: 'dataplane' }, action: 'access.allow',
  object: 'tcp 10.30.2.10:38540 -> 10.30.1.10:502',
  before: null, after: `sha256:${HASH}`,
  reason: 'conduit hmi-reads-plc (allow) ot-hmi -> ot-plc: tcp/502 {"functions":["read_*"]} (septa-lab: spec.conduits[2])',
  result: 'refused: policy invalid (1 problem(s)): 27:17: spec.zones[2].subnets[0]: "10.20.0.0/33" is not a prefix',
  detail: '5 observation(s) from 1795707984023 to 1795707985999', prev_hash: PREV, hash: HASH,
};

/** The server-rendered markup without Svelte's scoping classes. */
const markup = (props: { records: AuditRecord[]; open?: number[] }) =>
  render(AuditTable, { props }).body.replace(/ ?svelte-\w+/g, '').replace(/ class=""/g, '');

describe('audit table', () => {
  it('lists every field of a record, in full, for its details row (new fields too)', () => {
    const fields = auditFields({ ...long, signer: 'ed25519:7549d068' } as AuditRecord);
    const keys = fields.map(([k]) => k);
    expect(keys).toEqual(['sequence', 'time', 'actor', 'action', 'object', 'result', 'reason', 'detail', 'before', 'after',
      'record hash', 'previous hash', 'signer']);
    const m = Object.fromEntries(fields);
    expect(m.time).toBe('2026-11-26T15:46:26.123Z (1795707986123 ms)');
    expect(m.actor).toBe('system:dataplane');
    expect(m['record hash']).toBe(HASH);
    expect(m['previous hash']).toBe(PREV);
    expect(m.before).toBe('—');
    expect(m.result).toBe(long.result);
    expect(m.signer).toBe('ed25519:7549d068');
  });

  it('splits a result into its badge word and its why', () => {
    expect(resultParts('ok')).toEqual({ word: 'ok', rest: '' });
    expect(resultParts('refused: invalid credentials')).toEqual({ word: 'refused', rest: 'invalid credentials' });
    expect(resultParts(long.result).rest).toMatch(/^policy invalid .*"10\.20\.0\.0\/33" is not a prefix$/);
  });

  it('lays the table out in fixed columns: long cells are cut or wrapped with their full text on hover', () => {
    const h = markup({ records: [long] });
    expect(h).toMatch(/<table data-testid="audit-table" class="audit[^"]*">/);
    expect(h.match(/<col\b/g)).toHaveLength(8);
    // The object wraps within two lines and carries its full text; actor and action are cut.
    expect(h).toMatch(/<td class="mono" title="tcp 10\.30\.2\.10:38540 -> 10\.30\.1\.10:502"><div class="clamp two">/);
    expect(h).toMatch(/<td class="cut" title="system:dataplane">/);
    expect(h).toMatch(/<td class="mono cut" title="access\.allow">/);
    // The result badge says one word; the why goes to the wrapped column, full text on hover.
    expect(h).toMatch(/<span class="badge bad[^"]*">refused<\/span>/);
    expect(h).toMatch(/<div class="clamp why[^"]*" title="refused: policy invalid/);
    expect(h).toMatch(/<div class="clamp[^"]*" title="conduit hmi-reads-plc/);
    expect(h).toMatch(/<div class="muted clamp[^"]*" title="5 observation\(s\)/);
    // Collapsed: no details row, the toggle says so.
    expect(h).not.toContain('data-testid="audit-details"');
    expect(h).toContain('aria-expanded="false"');
  });

  it('shows every field in full in an open details row', () => {
    const h = markup({ records: [long, { ...long, seq: 8 }], open: [7] });
    const rows = [...h.matchAll(/data-testid="audit-details" data-seq="(\d+)"/g)].map((m) => m[1]);
    expect(rows).toEqual(['7']);
    const details = h.slice(h.indexOf('data-testid="audit-details"'), h.indexOf('data-seq="8"'));
    for (const [k, v] of auditFields(long)) {
      expect(details).toContain(`<dt>${k}</dt>`);
      expect(details).toContain(v.replace(/&/g, '&amp;').replace(/</g, '&lt;'));
    }
  });

  it('says when no record matches', () => {
    expect(markup({ records: [] })).toContain('No records match.');
  });
});
