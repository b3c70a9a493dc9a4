// Whether the policy page offers a rollback to the selected revision. Revisions carry the
// sha256 of their canonical content (`RevisionView.hash`, also the running policy's ETag), so a
// revision whose hash is the running one's would run exactly what runs now: no rollback is
// offered to it, and the page says why.
import type { RevisionView } from '../lib/api/types';

export type RollbackOffer =
  /** No policy runs (nothing to compare with): a rollback is offered. */
  | { kind: 'offer'; running: null }
  /** The content differs from the running revision's: a rollback is offered. */
  | { kind: 'offer'; running: RevisionView }
  /** The selected revision is the running one. */
  | { kind: 'running' }
  /** Another revision with the running revision's content (e.g. the one a rollback went back to). */
  | { kind: 'identical'; running: RevisionView };

export function rollbackOffer(selected: RevisionView, running: RevisionView | null | undefined): RollbackOffer {
  if (!running) return { kind: 'offer', running: null };
  if (selected.id === running.id) return { kind: 'running' };
  if (selected.hash === running.hash) return { kind: 'identical', running };
  return { kind: 'offer', running };
}
