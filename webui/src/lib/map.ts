// Cytoscape rendering of the map model. Loaded on demand (its own chunk) by the map page.
import cytoscape from 'cytoscape';
import { edgeWidth, VERDICT_COLOURS, type MapModel } from './graph';
import { positions } from './layout';

export type Selection = { kind: 'host' | 'zone' | 'edge'; id: string } | null;

export function render(container: HTMLElement, m: MapModel, onSelect: (s: Selection) => void): cytoscape.Core {
  const pos = positions(m);
  const elements: cytoscape.ElementDefinition[] = [
    ...m.zones.map((z) => ({
      group: 'nodes' as const,
      data: { id: z.id, label: `${z.name}${z.mode === 'monitor' ? ' (monitor)' : ''}`, kind: 'zone', mode: z.mode },
      position: pos.get(z.id),
    })),
    ...m.hosts.map((h) => ({
      group: 'nodes' as const,
      data: { id: h.id, parent: h.zone, label: h.name ? `${h.name}\n${h.ip}` : h.ip, kind: 'host' },
      position: pos.get(h.id),
    })),
    ...m.edges.map((e) => ({
      group: 'edges' as const,
      data: { id: e.id, source: e.src, target: e.dst, colour: VERDICT_COLOURS[e.verdict], width: edgeWidth(e.bytes), verdict: e.verdict },
    })),
  ];
  const big = m.edges.length > 1000;
  const cy = cytoscape({
    container,
    elements,
    layout: { name: 'preset', fit: true, padding: 30 },
    wheelSensitivity: 0.3,
    minZoom: 0.05,
    maxZoom: 4,
    hideEdgesOnViewport: big,
    textureOnViewport: big,
    pixelRatio: big ? 1 : 'auto',
    style: [
      {
        selector: 'node[kind = "zone"]',
        style: {
          label: 'data(label)', 'text-valign': 'top', 'text-halign': 'center', 'font-size': 13, 'font-weight': 'bold',
          'background-color': '#eef2f8', 'border-color': '#9fb0cc', 'border-width': 1, shape: 'round-rectangle', padding: '18px',
        },
      },
      { selector: 'node[kind = "zone"][mode = "monitor"]', style: { 'border-style': 'dashed', 'border-color': '#d98e04' } },
      {
        selector: 'node[kind = "host"]',
        style: {
          label: 'data(label)', 'font-size': 9, 'text-wrap': 'wrap', 'text-valign': 'bottom', width: 14, height: 14,
          'background-color': '#1f5fbf',
        },
      },
      {
        selector: 'edge',
        style: {
          width: 'data(width)', 'line-color': 'data(colour)', 'target-arrow-color': 'data(colour)',
          'target-arrow-shape': big ? 'none' : 'triangle', 'curve-style': big ? 'haystack' : 'bezier', opacity: 0.8,
        },
      },
      { selector: ':selected', style: { 'border-width': 3, 'border-color': '#111', 'line-style': 'dashed', opacity: 1 } },
    ],
  });
  cy.on('tap', 'node, edge', (ev) => {
    const t = ev.target;
    onSelect({ kind: t.isEdge() ? 'edge' : t.data('kind'), id: t.id() });
  });
  cy.on('tap', (ev) => {
    if (ev.target === cy) onSelect(null);
  });
  return cy;
}
