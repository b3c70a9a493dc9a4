// Positions for the zone map: zones around a ring (so flows between zones are chords that do
// not hide behind each other), each zone's hosts in a small grid at its place on the ring.
// Computed directly (no force simulation), so 500 hosts and 5000 edges lay out at once.
import type { MapModel } from './graph';

export function positions(m: MapModel, spacing = 60): Map<string, { x: number; y: number }> {
  const byZone = new Map<string, string[]>();
  for (const h of m.hosts) {
    const l = byZone.get(h.zone) ?? [];
    l.push(h.id);
    byZone.set(h.zone, l);
  }
  const out = new Map<string, { x: number; y: number }>();
  const sizes = m.zones.map((z) => {
    const n = byZone.get(z.id)?.length ?? 0;
    const cols = Math.max(1, Math.ceil(Math.sqrt(n)));
    return { cols, rows: Math.max(1, Math.ceil(n / cols)) };
  });
  const widest = Math.max(1, ...sizes.map((s) => Math.max(s.cols, s.rows))) * spacing;
  const n = m.zones.length;
  // Circumference large enough for every zone block plus a gap.
  const radius = n <= 1 ? 0 : Math.max(220, (n * (widest + spacing * 1.5)) / (2 * Math.PI));
  m.zones.forEach((z, k) => {
    const a = (2 * Math.PI * k) / Math.max(1, n) - Math.PI / 2;
    const cx = radius * Math.cos(a);
    const cy = radius * Math.sin(a);
    const hosts = (byZone.get(z.id) ?? []).slice().sort();
    const { cols, rows } = sizes[k];
    if (!hosts.length) out.set(z.id, { x: cx, y: cy });
    hosts.forEach((id, i) =>
      out.set(id, {
        x: cx + ((i % cols) - (cols - 1) / 2) * spacing,
        y: cy + (Math.floor(i / cols) - (rows - 1) / 2) * spacing,
      }),
    );
  });
  return out;
}
