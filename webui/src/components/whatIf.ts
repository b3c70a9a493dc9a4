// The policy page's what-if form: hints taken from the running appliance (its zones' prefixes and
// the flows it recorded, never fixed example addresses) and the checks made before anything is
// sent to POST /api/v1/policy/decide.
import { contains, parseIp, parsePrefix } from '../lib/cidr';
import type { FlowRecord, Zone } from '../lib/api/types';
import { flowId, flowSpec, verdictOf, type Verdict } from '../lib/format';

export interface WhatIfForm {
  src: string;
  dst: string;
  proto: string;
  port: string;
  revision: string;
}

export const emptyForm = (): WhatIfForm => ({ src: '', dst: '', proto: 'tcp', port: '', revision: '' });

/** The protocols the form suggests; any protocol number 0–255 is accepted too. */
export const PROTOCOLS = ['tcp', 'udp', 'icmp', 'icmpv6'];

export interface FieldProblem {
  field: 'src' | 'dst' | 'proto' | 'port';
  message: string;
}

/** The body of a decide request, once the form is valid. */
export interface DecideBody {
  src: string;
  dst: string;
  proto: string;
  port: number;
  revision: number | null;
}

/** An address in one of a zone's prefixes, shown as an example in an empty field. */
export interface Example {
  address: string;
  zone: string;
  prefix: string;
}

function formatV4(n: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((n >> s) & 255n)).join('.');
}

/** RFC 5952 text: lower case, no leading zeros, the longest run (≥ 2) of zero groups as `::`. */
export function formatV6(n: bigint): string {
  const g = Array.from({ length: 8 }, (_, i) => Number((n >> BigInt(112 - 16 * i)) & 0xffffn));
  let best = { at: -1, len: 0 };
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > best.len && j - i >= 2) best = { at: i, len: j - i };
    i = j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(':');
  if (best.at < 0) return hex(g);
  return `${hex(g.slice(0, best.at))}::${hex(g.slice(best.at + best.len))}`;
}

/** The first host address of a prefix (the network address + 1; the address itself for /31, /32, /127, /128). */
export function hostIn(prefix: string): string | null {
  const p = parsePrefix(prefix.trim());
  if (!p) return null;
  const bits = p.v6 ? 128 : 32;
  const hostBits = BigInt(bits - p.len);
  const net = (p.n >> hostBits) << hostBits;
  const n = hostBits >= 2n ? net + 1n : p.n;
  return p.v6 ? formatV6(n) : formatV4(n);
}

/**
 * Example source and destination addresses for the empty form: a host of the first zone that
 * has a prefix, and one of another zone, outside the first one's prefixes when there is such a
 * zone (the same zone when only one has prefixes). Null when no zone names a prefix (zones made
 * of IP sets or selectors only).
 */
export function examples(zones: Zone[]): { src: Example | null; dst: Example | null } {
  const found: Example[] = [];
  for (const z of zones) {
    for (const s of z.subnets ?? []) {
      const address = hostIn(s);
      if (address) {
        found.push({ address, zone: z.name, prefix: s });
        break;
      }
    }
  }
  const src = found[0] ?? null;
  // Preferably outside the source's zone altogether (not a zone nested in its prefixes).
  const srcPrefixes = (zones.find((z) => z.name === src?.zone)?.subnets ?? []).map((s) => parsePrefix(s.trim())).filter((p) => p !== null);
  const outside = (e: Example) => !srcPrefixes.some((p) => contains(p, e.address));
  const dst = found.find((e) => e.zone !== src?.zone && outside(e)) ?? found.find((e) => e.zone !== src?.zone) ?? src;
  return { src, dst };
}

/** The placeholder text of an address field. */
export function placeholder(e: Example | null): string {
  return e ? `e.g. ${e.address}` : 'IPv4 or IPv6 address';
}

/** The hint (title) of an address field. */
export function hint(e: Example | null): string {
  return e ? `an address; ${e.address} is in zone ${e.zone} (${e.prefix})` : 'an IPv4 or IPv6 address';
}

export interface RecentChoice {
  id: string;
  label: string;
  verdict: Verdict;
  form: Pick<WhatIfForm, 'src' | 'dst' | 'proto' | 'port'>;
}

/**
 * Distinct flows among the recorded ones, newest first, at most `limit`: each fills the form
 * with a flow the appliance has really seen.
 */
export function recentChoices(flows: FlowRecord[], limit = 12): RecentChoice[] {
  const seen = new Set<string>();
  const out: RecentChoice[] = [];
  for (const f of [...flows].sort((a, b) => b.ts_ms - a.ts_ms)) {
    const spec = flowSpec(f);
    // One entry per question: the source port does not change the decision the form asks for.
    const key = `${spec.src}|${spec.dst}|${spec.proto}|${spec.port}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const verdict = verdictOf(f.action, f.mode);
    out.push({
      id: flowId(f),
      label: `${spec.src} → ${spec.dst} ${spec.proto}/${spec.port} (${verdict})`,
      verdict,
      form: { src: spec.src, dst: spec.dst, proto: spec.proto, port: String(spec.port) },
    });
    if (out.length >= limit) break;
  }
  return out;
}

/** Whether the protocol's "port" is an ICMP message type. */
export function isIcmp(proto: string): boolean {
  const p = proto.trim().toLowerCase();
  return p === 'icmp' || p === 'icmpv6' || p === 'icmp6' || p === '1' || p === '58';
}

/** A protocol name the API knows, or a protocol number; null when it is neither. */
function protoNumber(proto: string): number | null {
  const p = proto.trim().toLowerCase();
  const named: Record<string, number> = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58, icmp6: 58 };
  if (p in named) return named[p];
  if (!/^\d{1,3}$/.test(p)) return null;
  const n = Number(p);
  return n <= 255 ? n : null;
}

/** Rust's `IpAddr` text: IPv4 dotted quad, or IPv6 (an IPv4 tail such as `::ffff:10.0.0.1` allowed). */
export function ipFamily(s: string): 4 | 6 | null {
  const t = s.trim();
  if (!t.includes(':')) return parseIp(t) ? 4 : null;
  const tail = t.match(/^(.*:)(\d+\.\d+\.\d+\.\d+)$/);
  if (tail) {
    const v4 = parseIp(tail[2]);
    if (!v4) return null;
    const hi = (v4.n >> 16n).toString(16);
    const lo = (v4.n & 0xffffn).toString(16);
    return parseIp(`${tail[1]}${hi}:${lo}`) ? 6 : null;
  }
  return parseIp(t) ? 6 : null;
}

/**
 * Checks the form as the API would, so a mistake is named next to its field before anything is
 * sent. Returns the request body, or the problems (one per field at most).
 */
export function check(f: WhatIfForm): { body: DecideBody } | { problems: FieldProblem[] } {
  const problems: FieldProblem[] = [];
  const fam: Record<'src' | 'dst', 4 | 6 | null> = { src: null, dst: null };
  for (const k of ['src', 'dst'] as const) {
    const v = f[k].trim();
    const what = k === 'src' ? 'source' : 'destination';
    if (!v) problems.push({ field: k, message: `enter a ${what} address` });
    else if ((fam[k] = ipFamily(v)) === null) problems.push({ field: k, message: `"${v}" is not an IP address (IPv4 a.b.c.d or IPv6)` });
  }
  if (fam.src && fam.dst && fam.src !== fam.dst)
    problems.push({ field: 'dst', message: `the source is IPv${fam.src}, the destination IPv${fam.dst}: use one address family` });
  const proto = protoNumber(f.proto);
  if (proto === null)
    problems.push({ field: 'proto', message: f.proto.trim() ? `"${f.proto.trim()}" is not tcp, udp, icmp, icmpv6 or a protocol number 0–255` : 'enter a protocol' });
  let port = 0;
  const p = f.port.trim();
  const icmp = isIcmp(f.proto);
  const max = icmp ? 255 : 65535;
  const name = icmp ? 'an ICMP type' : 'a port';
  if (!p) {
    // TCP and UDP decisions depend on the port; other protocols have none (0 is sent).
    if (proto === 6 || proto === 17 || icmp) problems.push({ field: 'port', message: `enter ${name} (0–${max})` });
  } else if (!/^\d+$/.test(p) || Number(p) > max) problems.push({ field: 'port', message: `"${p}" is not ${name}: a whole number 0–${max}` });
  else port = Number(p);
  if (problems.length) return { problems };
  return {
    body: {
      src: f.src.trim(),
      dst: f.dst.trim(),
      proto: f.proto.trim().toLowerCase(),
      port,
      revision: f.revision ? Number(f.revision) : null,
    },
  };
}
