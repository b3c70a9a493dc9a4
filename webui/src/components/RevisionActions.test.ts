import { describe, expect, it } from 'vitest';
import { render } from 'svelte/server';
import RevisionActions from './RevisionActions.svelte';
import type { RevisionView } from '../lib/api/types';
import { rollbackOffer } from './rollback';

const rev = (id: number, hash: string, o: Partial<RevisionView> = {}): RevisionView => ({
  id, hash, kind: 'commit', author: 'user:admin', created_ms: 0, reason: 'r', parent: id > 1 ? id - 1 : null, ...o,
});
const H1 = 'a'.repeat(64);
const H2 = 'b'.repeat(64);
const onRollback = async () => true;
const html = (selected: RevisionView, running: RevisionView | null, o: { canRollback?: boolean; vsRunning?: string | null } = {}) =>
  render(RevisionActions, { props: { selected, running, canRollback: o.canRollback ?? true, vsRunning: o.vsRunning ?? null, onRollback } }).body;

describe('rollback offer', () => {
  it('is made only for content that differs from the running revision', () => {
    const running = rev(4, H1, { kind: 'rollback' });
    expect(rollbackOffer(rev(1, H1), running)).toEqual({ kind: 'identical', running });
    expect(rollbackOffer(rev(3, H2), running)).toEqual({ kind: 'offer', running });
    expect(rollbackOffer(running, running)).toEqual({ kind: 'running' });
    expect(rollbackOffer(rev(1, H1), null)).toEqual({ kind: 'offer', running: null });
  });

  it('says a revision identical to the running one is identical, with no rollback button', () => {
    const h = html(rev(1, H1), rev(4, H1, { kind: 'rollback' }));
    expect(h).toContain('data-offer="identical"');
    expect(h).toMatch(/Identical to the running revision 4: same content\s+\(hash <span class="mono">aaaaaaaa<\/span>\)/);
    expect(h).not.toContain('Roll back to');
    expect(h).not.toContain('rollback-reason');
  });

  it('offers a rollback to different content, with what it would change', () => {
    const h = html(rev(1, H1), rev(3, H2), { vsRunning: 'zones +0 -0 ~1' });
    expect(h).toContain('data-offer="offer"');
    expect(h).toContain('Roll back to 1');
    expect(h).toMatch(/Against the running revision 3, a rollback to it changes:\s+zones \+0 -0 ~1/);
    // Equal summaries with different hashes (order only) are said as such.
    expect(html(rev(1, H1), rev(3, H2), { vsRunning: 'no change' })).toContain('order or layout only');
  });

  it('shows no rollback to a role without it, and none for the running revision', () => {
    expect(html(rev(1, H1), rev(3, H2), { canRollback: false })).not.toContain('Roll back to');
    const h = html(rev(3, H2), rev(3, H2));
    expect(h).toContain('This is the running revision.');
    expect(h).not.toContain('Roll back to');
  });
});
