// A revision's policy text (GET /api/v1/revisions/{id}/source): the text as the operator sent it,
// comments kept, or — for revisions without one — the canonical document rendered as YAML.
import type { RevisionSourceView } from './api/types';

/** The syntax to declare when sending editor text: JSON if it starts with `{` (as the API guesses). */
export function textFormat(text: string): 'json' | 'yaml' {
  return text.trimStart().startsWith('{') ? 'json' : 'yaml';
}

/** One line saying where a revision's text comes from. */
export function sourceNote(s: RevisionSourceView): string {
  return s.origin === 'submitted'
    ? `Revision ${s.revision}: the ${s.format.toUpperCase()} text as submitted.`
    : `Revision ${s.revision}: no submitted text was kept (an older revision, or sent as a JSON object); its document rendered as YAML.`;
}
