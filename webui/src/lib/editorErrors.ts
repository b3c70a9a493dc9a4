// Maps the API's field errors (problem+json `errors[]`) onto positions in the editor's text.
// The API locates YAML errors itself (line/column); an error without a line (e.g. a body field
// outside the policy text) is shown at the top and listed under the editor with its field.
import type { FieldError } from './api/types';

export interface Mark {
  line: number; // 1-based
  column: number; // 1-based
  message: string;
  field: string;
  located: boolean;
}

export function marks(errors: FieldError[], lineCount: number): Mark[] {
  return errors.map((e) => {
    const located = !!e.line && e.line <= lineCount;
    return {
      line: located ? (e.line as number) : 1,
      column: located ? (e.column ?? 1) : 1,
      message: e.message,
      field: e.field,
      located,
    };
  });
}

/** Character offset of a 1-based line/column in `text`, clamped to the text. */
export function offsetOf(text: string, line: number, column: number): number {
  let off = 0;
  for (let l = 1; l < line; l++) {
    const nl = text.indexOf('\n', off);
    if (nl < 0) return text.length;
    off = nl + 1;
  }
  const end = text.indexOf('\n', off);
  const lineEnd = end < 0 ? text.length : end;
  return Math.min(off + Math.max(0, column - 1), lineEnd);
}
