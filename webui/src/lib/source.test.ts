import { describe, expect, it } from 'vitest';
import { sourceNote, textFormat } from './source';

describe('revision source', () => {
  it('declares JSON only for text that starts with a brace', () => {
    expect(textFormat('  {"kind": "Policy"}')).toBe('json');
    expect(textFormat('# {not json}\nkind: Policy\n')).toBe('yaml');
    expect(textFormat('')).toBe('yaml');
  });

  it('says whether the text is the submitted one or a rendering', () => {
    const submitted = sourceNote({ revision: 3, format: 'yaml', origin: 'submitted', text: '# c\n' });
    expect(submitted).toMatch(/Revision 3: the YAML text as submitted/);
    const rendered = sourceNote({ revision: 1, format: 'yaml', origin: 'rendered', text: 'a: 1\n' });
    expect(rendered).toMatch(/rendered as YAML/);
    expect(rendered).not.toMatch(/as submitted/);
  });
});
