// The policy editor's text survives an expired session, a reload and navigation: it is kept in
// sessionStorage (this tab only) until committed or discarded.
const KEY = 'septa.policy.draft';

export interface Draft {
  text: string;
  /** Hash of the running revision the draft started from (to warn when it moved on). */
  base: string | null;
  savedMs: number;
}

export function loadDraft(store: Storage = sessionStorage): Draft | null {
  const raw = store.getItem(KEY);
  if (!raw) return null;
  try {
    const d = JSON.parse(raw) as Draft;
    return typeof d.text === 'string' ? d : null;
  } catch {
    return null;
  }
}

export function saveDraft(d: Draft, store: Storage = sessionStorage): void {
  store.setItem(KEY, JSON.stringify(d));
}

export function clearDraft(store: Storage = sessionStorage): void {
  store.removeItem(KEY);
}
