// Why a flow was decided: the deciding clause of (rule, revision), asked once per pair from the
// what-if endpoint with one representative flow and cached. Flow records carry the rule and the
// revision hash but not the clause text.
import { get, post } from './api/client';
import type { Explanation, FlowRecord, RevisionPage } from './api/types';
import { flowSpec } from './format';

const cache = new Map<string, Promise<Explanation | null>>();
let revIds: Promise<Map<string, number>> | null = null;

export function revisionIds(refresh = false): Promise<Map<string, number>> {
  if (!revIds || refresh)
    revIds = get<RevisionPage>('/api/v1/revisions?limit=1000')
      .then((p) => new Map(p.items.map((r) => [r.hash, r.id])))
      .catch(() => new Map());
  return revIds;
}

export function explain(f: FlowRecord): Promise<Explanation | null> {
  const key = `${f.rule}@${f.revision}`;
  let p = cache.get(key);
  if (!p) {
    p = (async () => {
      let id = (await revisionIds()).get(f.revision);
      if (id === undefined) id = (await revisionIds(true)).get(f.revision);
      if (id === undefined) return null;
      const e = await post<Explanation>('/api/v1/policy/decide', {
        ...flowSpec(f),
        revision: id,
      });
      return e.rule === f.rule ? e : null;
    })().catch(() => null);
    cache.set(key, p);
  }
  return p;
}
