import { describe, expect, it } from 'vitest';
import { render } from 'svelte/server';
import WhatIf from './WhatIf.svelte';
import type { FlowRecord, Zone } from '../lib/api/types';
import { check, emptyForm, examples, formatV6, hostIn, ipFamily, recentChoices, type WhatIfForm } from './whatIf';

const zones: Zone[] = [
  { name: 'plant', selector: { matchLabels: { role: 'plc' } } },
  { name: 'office', subnets: ['172.16.8.0/22', '172.16.12.0/22'] },
  { name: 'office-2', subnets: ['172.16.9.0/24'] },
  { name: 'scada', subnets: ['192.168.40.0/24'] },
];
const flow = (o: Partial<FlowRecord>): FlowRecord =>
  ({
    ts_ms: 1000, src: '172.16.8.20', dst: '192.168.40.7', proto: 6, sport: 40000, dport: 502, action: 'allow', mode: 'enforce',
    kind: 'start', bytes: 0, packets: 0, clause: '', l7: '', l7_reason: '', revision: 'ab', rule: 1, ...o,
  }) as FlowRecord;
const form = (o: Partial<WhatIfForm>): WhatIfForm => ({ ...emptyForm(), src: '172.16.8.20', dst: '192.168.40.7', port: '502', ...o });
const problems = (f: WhatIfForm) => {
  const c = check(f);
  return 'problems' in c ? Object.fromEntries(c.problems.map((p) => [p.field, p.message])) : {};
};

describe('what-if form defaults', () => {
  it('starts empty; its examples are hosts of the running zones, never fixed addresses', () => {
    const h = render(WhatIf, { props: { zones, revisions: [], flows: [] } }).body;
    const input = (name: string) => h.match(new RegExp(`<input name="${name}"[^>]*>`))?.[0] ?? '';
    expect(input('wi-src')).toContain('value=""');
    expect(input('wi-dst')).toContain('value=""');
    expect(input('wi-port')).toContain('value=""');
    expect(input('wi-src')).toContain('placeholder="e.g. 172.16.8.1"');
    expect(input('wi-dst')).toContain('placeholder="e.g. 192.168.40.1"');
    expect(input('wi-src')).toContain('zone office (172.16.8.0/22)');
    // The demo lab's addresses appear nowhere.
    expect(h).not.toMatch(/10\.10\.\d+\.\d+/);
    expect(h).toContain('no recorded flows');
  });

  it('falls back to a neutral hint without prefixes, and to a nested or the same zone', () => {
    expect(examples([{ name: 'plant', ipSets: ['plcs'] }])).toEqual({ src: null, dst: null });
    const h = render(WhatIf, { props: { zones: [zones[0]], revisions: [], flows: [] } }).body;
    expect(h).toContain('placeholder="IPv4 or IPv6 address"');
    const one = examples([zones[1]]);
    expect(one.src?.address).toBe('172.16.8.1');
    expect(one.dst?.zone).toBe('office');
    // Only a zone nested in the first one's prefixes: that one.
    expect(examples([zones[1], zones[2]]).dst).toEqual({ address: '172.16.9.1', zone: 'office-2', prefix: '172.16.9.0/24' });
  });

  it('derives host addresses from IPv4 and IPv6 prefixes', () => {
    expect(hostIn('10.99.0.0/24')).toBe('10.99.0.1');
    expect(hostIn('10.99.0.77/24')).toBe('10.99.0.1');
    expect(hostIn('10.99.0.77/32')).toBe('10.99.0.77');
    expect(hostIn('10.99.0.76/31')).toBe('10.99.0.76');
    expect(hostIn('2001:db8:0:7::/64')).toBe('2001:db8:0:7::1');
    expect(hostIn('fd00::/8')).toBe('fd00::1');
    expect(hostIn('not-a-prefix')).toBeNull();
    expect(formatV6(0n)).toBe('::');
    expect(formatV6((0x20010db8n << 96n) | 1n)).toBe('2001:db8::1');
    // A single zero group is not shortened (RFC 5952).
    expect(formatV6(0x00010002000000030004000500060007n)).toBe('1:2:0:3:4:5:6:7');
  });

  it('offers recorded flows newest first, one per question, and fills the form with one', () => {
    const flows = [
      flow({ ts_ms: 1 }),
      flow({ ts_ms: 3, sport: 40001 }), // same question as the first (only the source port differs)
      flow({ ts_ms: 2, src: '172.16.9.4', dst: '192.168.40.7', dport: 22, action: 'deny' }),
      flow({ ts_ms: 4, proto: 1, sport: 8, dport: 0 }), // ICMP: the type travels in `port`
    ];
    const c = recentChoices(flows);
    expect(c.map((x) => x.label)).toEqual([
      '172.16.8.20 → 192.168.40.7 icmp/8 (allowed)',
      '172.16.8.20 → 192.168.40.7 tcp/502 (allowed)',
      '172.16.9.4 → 192.168.40.7 tcp/22 (denied)',
    ]);
    expect(c[2].form).toEqual({ src: '172.16.9.4', dst: '192.168.40.7', proto: 'tcp', port: '22' });
    expect(recentChoices(flows, 1)).toHaveLength(1);
    const h = render(WhatIf, { props: { zones, revisions: [], flows } }).body;
    expect(h).toContain('3 recorded flow(s)…');
    expect(h).toContain('172.16.9.4 → 192.168.40.7 tcp/22 (denied)');
  });
});

describe('what-if checks before sending', () => {
  it('sends a valid question as the API expects it', () => {
    expect(check(form({ proto: ' TCP ', revision: '3' }))).toEqual({
      body: { src: '172.16.8.20', dst: '192.168.40.7', proto: 'tcp', port: 502, revision: 3 },
    });
    expect(check(form({ proto: 'icmp', port: '8' }))).toMatchObject({ body: { proto: 'icmp', port: 8, revision: null } });
    expect(check(form({ src: '2001:db8::5', dst: '::ffff:192.168.40.7', proto: '17', port: '53' }))).toMatchObject({ body: { port: 53 } });
    // A protocol without ports (GRE) needs none.
    expect(check(form({ proto: '47', port: '' }))).toMatchObject({ body: { proto: '47', port: 0 } });
  });

  it('names a bad or missing address next to its field', () => {
    expect(problems(form({ src: '10.10.1' }))).toEqual({ src: '"10.10.1" is not an IP address (IPv4 a.b.c.d or IPv6)' });
    expect(problems(form({ src: '', dst: '300.1.1.1' }))).toEqual({
      src: 'enter a source address',
      dst: '"300.1.1.1" is not an IP address (IPv4 a.b.c.d or IPv6)',
    });
    expect(problems(form({ dst: '2001:db8::1' }))).toEqual({ dst: 'the source is IPv4, the destination IPv6: use one address family' });
    expect(ipFamily('fe80::1::2')).toBeNull();
    expect(ipFamily('::ffff:10.0.0.256')).toBeNull();
  });

  it('names a bad port, ICMP type or protocol', () => {
    expect(problems(form({ port: '70000' }))).toEqual({ port: '"70000" is not a port: a whole number 0–65535' });
    expect(problems(form({ port: '44x' }))).toEqual({ port: '"44x" is not a port: a whole number 0–65535' });
    expect(problems(form({ port: '-1' }))).toEqual({ port: '"-1" is not a port: a whole number 0–65535' });
    expect(problems(form({ port: '' }))).toEqual({ port: 'enter a port (0–65535)' });
    expect(problems(form({ proto: 'icmp', port: '300' }))).toEqual({ port: '"300" is not an ICMP type: a whole number 0–255' });
    expect(problems(form({ proto: 'sctp' }))).toEqual({ proto: '"sctp" is not tcp, udp, icmp, icmpv6 or a protocol number 0–255' });
    expect(problems(form({ proto: '256' }))).toMatchObject({ proto: expect.stringContaining('"256" is not') });
    expect(problems(form({ proto: '' }))).toMatchObject({ proto: 'enter a protocol' });
  });

  it('shows the problems of a filled form next to each field when rendered', () => {
    const h = render(WhatIf, { props: { zones, revisions: [], flows: [], initial: form({ port: '8080' }) } }).body;
    expect(h).toMatch(/<input name="wi-port"[^>]*value="8080"/);
    expect(h).toMatch(/<input name="wi-src"[^>]*value="172\.16\.8\.20"/);
    // ICMP renames the port field.
    const icmp = render(WhatIf, { props: { zones, revisions: [], flows: [], initial: form({ proto: 'icmp', port: '8' }) } }).body;
    expect(icmp).toContain('ICMP type');
  });
});
