// Recent flows plus the live stream (server-sent events on /api/v1/flows/stream).
import { get, qs } from './api/client';
import type { FlowPage, FlowRecord } from './api/types';

export interface LiveOptions {
  onFlow: (f: FlowRecord) => void;
  onState?: (s: 'live' | 'reconnecting' | 'closed', detail?: string) => void;
}

/** Opens the live stream; returns a function that closes it. */
export function subscribe(o: LiveOptions): () => void {
  const es = new EventSource('/api/v1/flows/stream', { withCredentials: true });
  es.addEventListener('flow', (e) => {
    try {
      o.onFlow(JSON.parse((e as MessageEvent).data) as FlowRecord);
    } catch {
      /* a malformed event is skipped */
    }
  });
  es.addEventListener('lagged', (e) => o.onState?.('live', `${(e as MessageEvent).data} events skipped (slow reader)`));
  es.onopen = () => o.onState?.('live');
  es.onerror = () => o.onState?.(es.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting');
  return () => es.close();
}

export async function recent(params: Record<string, string | number | undefined> = {}): Promise<FlowRecord[]> {
  return (await get<FlowPage>(`/api/v1/flows${qs({ limit: 1000, ...params })}`)).items;
}
