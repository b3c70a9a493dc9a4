// Synthetic map data for the interactivity measurement: `hosts` hosts in 20 zones and `edges`
// distinct host pairs. Used only by the e2e test (route interception), never by the console.
export function syntheticMap(hosts, edges) {
  const zones = 20;
  const policy = {
    apiVersion: 'septa.io/v1',
    kind: 'Policy',
    metadata: { name: 'synthetic' },
    spec: {
      defaults: { action: 'deny', mode: 'enforce' },
      zones: Array.from({ length: zones }, (_, z) => ({ name: `zone-${z}`, subnets: [`10.${z}.0.0/16`] })),
      conduits: [],
    },
  };
  const ip = (h) => `10.${h % zones}.${Math.floor(h / 250)}.${(h % 250) + 1}`;
  const flows = [];
  const seen = new Set();
  let s = 12345;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  const now = Date.now();
  while (flows.length < edges) {
    const a = Math.floor(rnd() * hosts);
    const b = Math.floor(rnd() * hosts);
    if (a === b || seen.has(`${a}>${b}`)) continue;
    seen.add(`${a}>${b}`);
    const r = rnd();
    flows.push({
      ts_ms: now - Math.floor(rnd() * 60000), src: ip(a), dst: ip(b), proto: 6, sport: 40000 + flows.length % 20000,
      dport: [443, 502, 22, 5432][flows.length % 4], action: r < 0.7 ? 'allow' : 'deny', mode: r < 0.85 ? 'enforce' : 'monitor',
      rule: 1, revision: 'synthetic', packets: 1 + Math.floor(rnd() * 1000), bytes: 60 + Math.floor(rnd() * 1e6),
    });
  }
  return { policy, flows };
}
