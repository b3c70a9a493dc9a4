// The zone map's model: zones as compound nodes, hosts inside the zone that contains them,
// observed flows aggregated into edges (one per src, dst and verdict), with filters. Pure, so
// it is unit-tested without a browser; map.ts turns it into Cytoscape elements.
import type { FlowRecord, PolicyDoc, Selector, Zone } from './api/types';
import { contains, parsePrefix, type Prefix } from './cidr';
import { flowId, protoName, verdictOf, type Verdict } from './format';

export interface ZoneNode {
  id: string;
  name: string;
  mode: string;
  hosts: number;
}
export interface HostNode {
  id: string;
  ip: string;
  zone: string; // zone id ('zone:unzoned' when none)
  zones: string[]; // every zone that contains it (zones may overlap)
  name?: string;
}
export interface Edge {
  id: string;
  src: string;
  dst: string;
  verdict: Verdict;
  flows: number;
  packets: number;
  bytes: number;
  services: string[]; // "tcp/502"
  rules: number[];
  revisions: string[];
  lastMs: number;
}
export interface MapModel {
  zones: ZoneNode[];
  hosts: HostNode[];
  edges: Edge[];
}

export interface MapFilter {
  zone?: string; // zone name: keep edges touching it
  proto?: string; // tcp, udp, icmp or a number
  port?: number;
  verdict?: Verdict;
  sinceMs?: number;
}

export const UNZONED = 'unzoned';

interface ZoneMatcher {
  zone: Zone;
  prefixes: Prefix[];
  addresses: Set<string>;
  specificity: number; // smaller is more specific
}

function selects(sel: Selector, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = e.key in labels;
    const vals = e.values ?? [];
    switch (e.operator) {
      case 'In':
        if (!has || !vals.includes(labels[e.key])) return false;
        break;
      case 'NotIn':
        if (has && vals.includes(labels[e.key])) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        return false;
    }
  }
  return true;
}

function matchers(doc: PolicyDoc): ZoneMatcher[] {
  const sets = new Map((doc.spec?.ipSets ?? []).map((s) => [s.name, s.addresses ?? []]));
  const endpoints = doc.spec?.endpoints ?? [];
  return (doc.spec?.zones ?? []).map((zone) => {
    const prefixes = (zone.subnets ?? []).map(parsePrefix).filter((p): p is Prefix => !!p);
    const addresses = new Set<string>();
    for (const s of zone.ipSets ?? []) for (const a of sets.get(s) ?? []) {
      const p = parsePrefix(a);
      if (p && p.len === (p.v6 ? 128 : 32)) addresses.add(a);
      else if (p) prefixes.push(p);
    }
    if (zone.selector) for (const ep of endpoints) if (selects(zone.selector, ep.labels ?? {})) addresses.add(ep.address);
    const widest = prefixes.reduce((m, p) => Math.max(m, (p.v6 ? 128 : 32) - p.len), 0);
    const specificity = prefixes.length ? widest : -1; // explicit addresses beat any subnet
    return { zone, prefixes, addresses, specificity };
  });
}

/** The zones containing `ip`, most specific first. */
export function zonesOf(ms: ZoneMatcher[], ip: string): string[] {
  const hit = ms.filter((m) => m.addresses.has(ip) || m.prefixes.some((p) => contains(p, ip)));
  hit.sort((a, b) => (a.addresses.has(ip) ? -1 : a.specificity) - (b.addresses.has(ip) ? -1 : b.specificity));
  return hit.map((m) => m.zone.name);
}

function protoMatches(f: FlowRecord, proto: string): boolean {
  return protoName(f.proto) === proto || String(f.proto) === proto;
}

export function filterFlows(flows: FlowRecord[], f: MapFilter, zoneOf: (ip: string) => string[]): FlowRecord[] {
  return flows.filter(
    (r) =>
      (!f.proto || protoMatches(r, f.proto)) &&
      (f.port === undefined || r.dport === f.port) &&
      (!f.verdict || verdictOf(r.action, r.mode) === f.verdict) &&
      (!f.sinceMs || r.ts_ms >= f.sinceMs) &&
      (!f.zone || zoneOf(r.src).includes(f.zone) || zoneOf(r.dst).includes(f.zone)),
  );
}

/**
 * Builds the map. `verdictFor` may override a flow's verdict (the draft view: how a staged
 * revision would decide it).
 */
export function buildMap(
  doc: PolicyDoc,
  flows: FlowRecord[],
  filter: MapFilter = {},
  verdictFor?: (f: FlowRecord) => Verdict | undefined,
): MapModel {
  const ms = matchers(doc);
  const cache = new Map<string, string[]>();
  const zoneOf = (ip: string) => {
    let z = cache.get(ip);
    if (!z) cache.set(ip, (z = zonesOf(ms, ip)));
    return z;
  };
  const kept = filterFlows(flows, filter, zoneOf);
  const hosts = new Map<string, HostNode>();
  const names = new Map((doc.spec?.endpoints ?? []).map((e) => [e.address, e.name]));
  const host = (ip: string) => {
    let h = hosts.get(ip);
    if (!h) {
      const zones = zoneOf(ip);
      h = { id: `host:${ip}`, ip, zone: `zone:${zones[0] ?? UNZONED}`, zones, name: names.get(ip) };
      hosts.set(ip, h);
    }
    return h;
  };
  // Named endpoints appear even before they talk.
  for (const ep of doc.spec?.endpoints ?? []) if (!filter.zone || zoneOf(ep.address).includes(filter.zone)) host(ep.address);
  const edges = new Map<string, Edge>();
  // A flow's start and end records are one flow.
  const flowsOf = new Map<string, Set<string>>();
  for (const f of kept) {
    const verdict = verdictFor?.(f) ?? verdictOf(f.action, f.mode);
    const s = host(f.src);
    const d = host(f.dst);
    const id = `${s.id}>${d.id}>${verdict}`;
    let e = edges.get(id);
    if (!e) {
      e = { id, src: s.id, dst: d.id, verdict, flows: 0, packets: 0, bytes: 0, services: [], rules: [], revisions: [], lastMs: 0 };
      edges.set(id, e);
    }
    const ids = flowsOf.get(id) ?? new Set<string>();
    ids.add(flowId(f));
    flowsOf.set(id, ids);
    e.flows = ids.size;
    e.packets += f.packets;
    e.bytes += f.bytes;
    e.lastMs = Math.max(e.lastMs, f.ts_ms);
    const svc = `${protoName(f.proto)}/${f.dport}`;
    if (!e.services.includes(svc)) e.services.push(svc);
    if (!e.rules.includes(f.rule)) e.rules.push(f.rule);
    if (!e.revisions.includes(f.revision)) e.revisions.push(f.revision);
  }
  const count = new Map<string, number>();
  for (const h of hosts.values()) count.set(h.zone, (count.get(h.zone) ?? 0) + 1);
  const zones: ZoneNode[] = (doc.spec?.zones ?? [])
    .filter((z) => !filter.zone || z.name === filter.zone || count.has(`zone:${z.name}`))
    .map((z) => ({ id: `zone:${z.name}`, name: z.name, mode: z.mode ?? doc.spec?.defaults?.mode ?? 'enforce', hosts: count.get(`zone:${z.name}`) ?? 0 }));
  if (count.has(`zone:${UNZONED}`)) zones.push({ id: `zone:${UNZONED}`, name: UNZONED, mode: '', hosts: count.get(`zone:${UNZONED}`) ?? 0 });
  return { zones, hosts: [...hosts.values()], edges: [...edges.values()] };
}

/** Edge width in px from its byte volume (log scale, 1..8). */
export function edgeWidth(bytes: number): number {
  return Math.min(8, 1 + Math.log10(1 + bytes) * 0.9);
}

export const VERDICT_COLOURS: Record<Verdict, string> = {
  allowed: '#2e8540',
  'would-deny': '#d98e04',
  denied: '#c62828',
};

/** An alert as the map needs it (`Anomaly` from /api/v1/anomalies). */
export interface MapAnomaly {
  flow: { src: string; dst: string };
  state: string;
  summary: string;
  model_id: string;
}

/**
 * The details line about the anomalies of an edge (`src` -> `dst`) or of a host (`dst`
 * undefined: flows from or to it). `list` null: the appliance reports no anomalies
 * (no /api/v1/anomalies, or not readable).
 */
export function anomalyLine(list: MapAnomaly[] | null, src: string, dst?: string): string {
  if (list === null) return 'anomalies: none reported (no anomaly source on this appliance)';
  const hits = list.filter((a) => (dst === undefined ? a.flow.src === src || a.flow.dst === src : a.flow.src === src && a.flow.dst === dst));
  if (!hits.length) return 'anomalies: none';
  const open = hits.filter((a) => a.state === 'open').length;
  return `anomalies: ${hits.length} (${open} open), latest: ${hits[0].summary} (${hits[0].model_id})`;
}
