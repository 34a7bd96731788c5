// A hand-written SVG line chart: log-scale x, log-scale (or linear) y, axes with ticks, one line per
// series, a legend. No plotting dependency. The defaults draw the engine's latency chart (y in ns,
// x in rules); the options let other suites plot rows/s, ms or MB against rows or rules.

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
  /** Y tick and tooltip labels (default: nanoseconds with units, `formatNs`). */
  formatY?: (v: number) => string;
  /** What x counts, for the point tooltips (default `rules`). */
  xUnit?: string;
  /**
   * Fit the axes to the data's own decades (linear y: from 0 to just above the largest value, on
   * round steps). Without it the axes always span at least 10..100 on x and y, which suits the
   * engine chart (13 rules, ~100 ns) but would waste most of a 10^4..10^6-row chart.
   */
  tight?: boolean;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

export function formatTick(v: number): string {
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

/** A round step (1, 2 or 5 × 10^k) at least `raw`, for linear ticks. */
function niceStep(raw: number): number {
  if (!(raw > 0)) return 1;
  const decade = Math.pow(10, Math.floor(Math.log10(raw)));
  const m = raw / decade;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * decade;
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
  const formatY = opts.formatY ?? formatNs;
  const xUnit = opts.xUnit ?? 'rules';
  const tight = opts.tight ?? false;
  const xMin = Math.pow(10, Math.floor(Math.log10(tight ? Math.min(...xs) : Math.min(...xs, 10))));
  // 100,003 rules still ends the axis at 100k (a point a hair past a decade sits on its edge).
  const xMaxDecade = Math.pow(10, Math.ceil(Math.log10((tight ? Math.max(...xs) : Math.max(...xs, 100)) / 1.05)));
  const xMax = Math.max(xMaxDecade, xMin * 10);
  const yMinRaw = tight ? Math.min(...ys) : Math.min(...ys, 10);
  const yMaxRaw = tight ? Math.max(...ys) : Math.max(...ys, 100);
  const yStep = niceStep((yMaxRaw * 1.05) / 5);
  const yMin = logY ? Math.pow(10, Math.floor(Math.log10(yMinRaw))) : 0;
  const yMaxLog = Math.pow(10, Math.ceil(Math.log10(yMaxRaw)));
  const yMax = logY ? Math.max(yMaxLog, yMin * 10) : tight ? Math.ceil((yMaxRaw * 1.05) / yStep) * yStep : yMaxRaw * 1.1;

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
      out.push(`<text x="${margin.left - 8}" y="${(+y + 4).toFixed(1)}" text-anchor="end">${formatY(v)}</text>`);
    }
  } else {
    const ticks = tight ? Math.round((yMax - yMin) / yStep) : 5;
    for (let i = 0; i <= ticks; i++) {
      const v = yMin + ((yMax - yMin) * i) / ticks;
      const y = sy(v).toFixed(1);
      out.push(`<line x1="${margin.left}" y1="${y}" x2="${margin.left + plotW}" y2="${y}" stroke="#e5e5e5"/>`);
      out.push(`<text x="${margin.left - 8}" y="${(+y + 4).toFixed(1)}" text-anchor="end">${formatY(v)}</text>`);
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
    for (const p of pts) out.push(`<circle cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="3.5" fill="${color}"><title>${esc(`${s.label}: ${formatTick(p.x)} ${xUnit}, ${formatY(p.y)}`)}</title></circle>`);
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
