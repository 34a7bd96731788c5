// A hand-written SVG line chart: log-scale x, log-scale y, axes with ticks, one line per series,
// a legend. No plotting dependency.

export interface Series {
  label: string;
  points: { x: number; y: number }[];
  /** Dashed line (e.g. for the floor). */
  dashed?: boolean;
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  width?: number;
  height?: number;
  /** Log scale on y as well (default true). */
  logY?: boolean;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function formatTick(v: number): string {
  if (v >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (v >= 1e3) return `${+(v / 1e3).toPrecision(3)}k`;
  return `${+v.toPrecision(3)}`;
}

/** Latency in ns → a short label with units. */
export function formatNs(ns: number): string {
  if (ns >= 1e9) return `${+(ns / 1e9).toPrecision(3)} s`;
  if (ns >= 1e6) return `${+(ns / 1e6).toPrecision(3)} ms`;
  if (ns >= 1e3) return `${+(ns / 1e3).toPrecision(3)} µs`;
  return `${+ns.toPrecision(3)} ns`;
}

export function lineChart(series: Series[], opts: ChartOptions): string {
  const width = opts.width ?? 860;
  const height = opts.height ?? 520;
  const logY = opts.logY ?? true;
  const legendWidth = 250;
  const margin = { left: 80, right: legendWidth + 20, top: 40, bottom: 56 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;

  const all = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y) && p.x > 0 && p.y > 0);
  const xs = all.map((p) => p.x);
  const ys = all.map((p) => p.y);
  const xMin = Math.pow(10, Math.floor(Math.log10(Math.min(...xs, 10))));
  // 100,003 rules still ends the axis at 100k (a point a hair past a decade sits on its edge).
  const xMax = Math.pow(10, Math.ceil(Math.log10(Math.max(...xs, 100) / 1.05)));
  const yMinRaw = Math.min(...ys, 10);
  const yMaxRaw = Math.max(...ys, 100);
  const yMin = logY ? Math.pow(10, Math.floor(Math.log10(yMinRaw))) : 0;
  const yMax = logY ? Math.pow(10, Math.ceil(Math.log10(yMaxRaw))) : yMaxRaw * 1.1;

  const sx = (x: number) => margin.left + ((Math.min(Math.log10(x), Math.log10(xMax)) - Math.log10(xMin)) / (Math.log10(xMax) - Math.log10(xMin))) * plotW;
  const sy = logY
    ? (y: number) => margin.top + plotH - ((Math.log10(y) - Math.log10(yMin)) / (Math.log10(yMax) - Math.log10(yMin))) * plotH
    : (y: number) => margin.top + plotH - ((y - yMin) / (yMax - yMin)) * plotH;

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  out.push(`<text x="${margin.left + plotW / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(opts.title)}</text>`);

  // Grid and ticks.
  for (let e = Math.log10(xMin); e <= Math.log10(xMax) + 1e-9; e++) {
    const v = Math.pow(10, e);
    const x = sx(v).toFixed(1);
    out.push(`<line x1="${x}" y1="${margin.top}" x2="${x}" y2="${margin.top + plotH}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${x}" y="${margin.top + plotH + 18}" text-anchor="middle">${formatTick(v)}</text>`);
  }
  if (logY) {
    for (let e = Math.log10(yMin); e <= Math.log10(yMax) + 1e-9; e++) {
      const v = Math.pow(10, e);
      const y = sy(v).toFixed(1);
      out.push(`<line x1="${margin.left}" y1="${y}" x2="${margin.left + plotW}" y2="${y}" stroke="#e5e5e5"/>`);
      out.push(`<text x="${margin.left - 8}" y="${(+y + 4).toFixed(1)}" text-anchor="end">${formatNs(v)}</text>`);
    }
  } else {
    for (let i = 0; i <= 5; i++) {
      const v = yMin + ((yMax - yMin) * i) / 5;
      const y = sy(v).toFixed(1);
      out.push(`<line x1="${margin.left}" y1="${y}" x2="${margin.left + plotW}" y2="${y}" stroke="#e5e5e5"/>`);
      out.push(`<text x="${margin.left - 8}" y="${(+y + 4).toFixed(1)}" text-anchor="end">${formatNs(v)}</text>`);
    }
  }
  // Axes.
  out.push(`<line x1="${margin.left}" y1="${margin.top + plotH}" x2="${margin.left + plotW}" y2="${margin.top + plotH}" stroke="black"/>`);
  out.push(`<line x1="${margin.left}" y1="${margin.top}" x2="${margin.left}" y2="${margin.top + plotH}" stroke="black"/>`);
  out.push(`<text x="${margin.left + plotW / 2}" y="${height - 14}" text-anchor="middle">${esc(opts.xLabel)}</text>`);
  out.push(`<text transform="translate(18 ${margin.top + plotH / 2}) rotate(-90)" text-anchor="middle">${esc(opts.yLabel)}</text>`);

  // Lines and points.
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    const pts = s.points.filter((p) => Number.isFinite(p.y) && p.y > 0).sort((a, b) => a.x - b.x);
    if (pts.length > 1) {
      const d = pts.map((p, j) => `${j === 0 ? 'M' : 'L'}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ');
      out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    }
    for (const p of pts) out.push(`<circle cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="3.5" fill="${color}"><title>${esc(`${s.label}: ${formatTick(p.x)} rules, ${formatNs(p.y)}`)}</title></circle>`);
  });

  // Legend.
  const lx = width - legendWidth;
  out.push(`<rect x="${lx - 10}" y="${margin.top}" width="${legendWidth}" height="${series.length * 20 + 12}" fill="white" stroke="#ccc"/>`);
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    const y = margin.top + 18 + i * 20;
    out.push(`<line x1="${lx}" y1="${y - 4}" x2="${lx + 24}" y2="${y - 4}" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    out.push(`<circle cx="${lx + 12}" cy="${y - 4}" r="3.5" fill="${color}"/>`);
    out.push(`<text x="${lx + 32}" y="${y}">${esc(s.label)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
