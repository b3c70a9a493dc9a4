// The audit table's cells: short forms that keep the table within a laptop screen, and the full
// list of a record's fields for its details row, so nothing is only reachable by scrolling.
import type { AuditRecord } from '../lib/api/types';

/** A result as its badge word (`ok`, `alert`, `refused`, …) and the rest of it (the why). */
export function resultParts(result: string): { word: string; rest: string } {
  const i = result.indexOf(':');
  if (i < 0) return { word: result, rest: '' };
  return { word: result.slice(0, i).trim(), rest: result.slice(i + 1).trim() };
}

const ORDER: (keyof AuditRecord)[] = [
  'seq', 'ts_ms', 'actor', 'action', 'object', 'result', 'reason', 'detail', 'before', 'after', 'hash', 'prev_hash',
];
const LABELS: Record<string, string> = {
  seq: 'sequence', ts_ms: 'time', actor: 'actor', action: 'action', object: 'object', result: 'result', reason: 'reason',
  detail: 'detail', before: 'before', after: 'after', hash: 'record hash', prev_hash: 'previous hash',
};

function text(key: string, v: unknown): string {
  if (v === null || v === undefined || v === '') return '—';
  if (key === 'ts_ms' && typeof v === 'number') return `${new Date(v).toISOString()} (${v} ms)`;
  if (key === 'actor' && typeof v === 'object' && v && 'kind' in v && 'name' in v) return `${v.kind}:${v.name}`;
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/**
 * Every field of a record, in full, as [label, text] pairs: the known fields in a fixed order,
 * then any field a newer server adds.
 */
export function auditFields(r: AuditRecord): [string, string][] {
  const rec = r as unknown as Record<string, unknown>;
  const keys = [...ORDER.filter((k) => k in rec), ...Object.keys(rec).filter((k) => !(ORDER as string[]).includes(k))];
  return keys.map((k) => [LABELS[k] ?? k, text(k, rec[k])]);
}
