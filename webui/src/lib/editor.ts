// The policy editor (CodeMirror 6, YAML), loaded on demand by the policy page.
import { basicSetup, EditorView } from 'codemirror';
import { EditorState } from '@codemirror/state';
import { yaml } from '@codemirror/lang-yaml';
import { lintGutter, setDiagnostics, type Diagnostic } from '@codemirror/lint';
import { offsetOf, type Mark } from './editorErrors';

export interface PolicyEditor {
  view: EditorView;
  text(): string;
  setText(t: string): void;
  setMarks(marks: Mark[]): void;
  destroy(): void;
}

export function createEditor(parent: HTMLElement, text: string, readOnly: boolean, onChange: (t: string) => void): PolicyEditor {
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc: text,
      extensions: [
        basicSetup,
        yaml(),
        lintGutter(),
        EditorState.readOnly.of(readOnly),
        EditorView.editable.of(!readOnly),
        EditorView.updateListener.of((u) => {
          if (u.docChanged) onChange(u.state.doc.toString());
        }),
        EditorView.theme({ '&': { height: '440px', fontSize: '13px' }, '.cm-scroller': { overflow: 'auto' } }),
      ],
    }),
  });
  return {
    view,
    text: () => view.state.doc.toString(),
    setText(t) {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: t } });
    },
    setMarks(marks) {
      const doc = view.state.doc.toString();
      const diags: Diagnostic[] = marks.map((m) => {
        const from = offsetOf(doc, m.line, m.column);
        const lineEnd = view.state.doc.lineAt(from).to;
        return { from, to: Math.max(from, lineEnd), severity: 'error', message: `${m.message} (${m.field})` };
      });
      view.dispatch(setDiagnostics(view.state, diags));
    },
    destroy: () => view.destroy(),
  };
}
