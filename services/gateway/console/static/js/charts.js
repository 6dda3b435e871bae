// Hand-written SVG charts: a line over time (equity), an area below zero with its limit (drawdown), and candles
// with their fills and the open position's entry, stop-loss and take-profit. Sized by viewBox, so they scale.

const NS = "http://www.w3.org/2000/svg";
const W = 800;
const H = 240;
const PAD = { left: 64, right: 12, top: 12, bottom: 24 };

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v != null) el.setAttribute(k, String(v));
  for (const c of children) if (c) el.append(c);
  return el;
}

function text(x, y, content, attrs = {}) {
  const t = svg("text", { x, y, ...attrs });
  t.textContent = content;
  return t;
}

function frame(label) {
  return svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": label });
}

function scale(domain, range) {
  const [d0, d1] = domain;
  const [r0, r1] = range;
  const span = d1 - d0 || 1;
  return (v) => r0 + ((v - d0) / span) * (r1 - r0);
}

function extent(values, pad = 0.05) {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (lo === hi) { lo -= Math.abs(lo) * 0.01 || 1; hi += Math.abs(hi) * 0.01 || 1; }
  const margin = (hi - lo) * pad;
  return [lo - margin, hi + margin];
}

function short(v) {
  const a = Math.abs(v);
  if (a >= 1e6) return `${(v / 1e6).toFixed(2)}M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
  if (a >= 100) return v.toFixed(0);
  return v.toFixed(a >= 1 ? 2 : 4);
}

function axes(chart, x, y, [t0, t1], [v0, v1], format = short) {
  const bottom = H - PAD.bottom;
  chart.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: bottom, y2: bottom, class: "axis" }));
  chart.append(svg("line", { x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: bottom, class: "axis" }));
  for (const v of [v0, (v0 + v1) / 2, v1]) {
    chart.append(text(PAD.left - 6, y(v) + 4, format(v), { "text-anchor": "end" }));
  }
  const day = (ms) => new Date(ms).toISOString().slice(0, 16).replace("T", " ");
  chart.append(text(PAD.left, H - 6, day(t0)));
  chart.append(text(W - PAD.right, H - 6, day(t1), { "text-anchor": "end" }));
}

function empty(label) {
  const chart = frame(label);
  chart.append(text(W / 2, H / 2, "no data yet", { "text-anchor": "middle" }));
  return chart;
}

// points: [{t: ms, v: number}]; limit: {v, label} drawn dashed; area: fill down to zero (a drawdown).
export function lineChart(points, { label, limit, area = false, format } = {}) {
  if (points.length < 2) return empty(label);
  const times = points.map((p) => p.t);
  const values = points.map((p) => p.v);
  if (limit) values.push(limit.v);
  if (area) values.push(0);
  const tDomain = [Math.min(...times), Math.max(...times)];
  const vDomain = extent(values);
  const x = scale(tDomain, [PAD.left, W - PAD.right]);
  const y = scale(vDomain, [H - PAD.bottom, PAD.top]);
  const chart = frame(label);
  axes(chart, x, y, tDomain, vDomain, format);
  const path = points.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join("");
  if (area) {
    const closed = `${path}L${x(tDomain[1]).toFixed(1)},${y(0).toFixed(1)}L${x(tDomain[0]).toFixed(1)},${y(0).toFixed(1)}Z`;
    chart.append(svg("path", { d: closed, class: "area" }));
  } else {
    chart.append(svg("path", { d: path, class: "line" }));
  }
  if (limit) {
    chart.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(limit.v), y2: y(limit.v), class: "limit" }));
    chart.append(text(W - PAD.right - 4, y(limit.v) - 4, limit.label, { "text-anchor": "end" }));
  }
  return chart;
}

// candles: [{ts, open, high, low, close}]; fills: [{ts, side, price}]; levels: [{kind, price}]
export function candleChart({ candles, fills = [], levels = [] }, { label } = {}) {
  if (candles.length === 0) return empty(label);
  const bars = candles.map((c) => ({ t: Date.parse(c.ts), o: +c.open, h: +c.high, l: +c.low, c: +c.close }));
  const marks = fills.map((f) => ({ t: Date.parse(f.ts), p: +f.price, side: f.side }));
  const lines = levels.map((l) => ({ kind: l.kind, p: +l.price }));
  const step = bars.length > 1 ? (bars[bars.length - 1].t - bars[0].t) / (bars.length - 1) : 3600e3;
  const tDomain = [bars[0].t - step / 2, bars[bars.length - 1].t + step / 2];
  const vDomain = extent([...bars.flatMap((b) => [b.h, b.l]), ...marks.map((m) => m.p), ...lines.map((l) => l.p)]);
  const x = scale(tDomain, [PAD.left, W - PAD.right]);
  const y = scale(vDomain, [H - PAD.bottom, PAD.top]);
  const chart = frame(label);
  axes(chart, x, y, tDomain, vDomain);
  const width = Math.max(1, ((W - PAD.left - PAD.right) / bars.length) * 0.7);
  for (const b of bars) {
    const cls = b.c >= b.o ? "up" : "down";
    chart.append(svg("line", { x1: x(b.t), x2: x(b.t), y1: y(b.h), y2: y(b.l), class: cls }));
    const top = y(Math.max(b.o, b.c));
    chart.append(svg("rect", { x: x(b.t) - width / 2, y: top, width, height: Math.max(1, y(Math.min(b.o, b.c)) - top),
      class: cls }));
  }
  for (const l of lines) {
    chart.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(l.p), y2: y(l.p), class: `level-${l.kind}` }));
    chart.append(text(W - PAD.right - 4, y(l.p) - 4, `${l.kind.replace("_", " ").toLowerCase()} ${short(l.p)}`,
      { "text-anchor": "end" }));
  }
  for (const m of marks) {
    // A fill after the last candle (an operator's order once a replay has ended) sits at the right edge.
    const cx = x(Math.min(Math.max(m.t, tDomain[0]), tDomain[1]));
    const cy = y(m.p);
    const d = m.side === "BUY" ? `M${cx},${cy - 7}L${cx - 6},${cy + 5}L${cx + 6},${cy + 5}Z`
      : `M${cx},${cy + 7}L${cx - 6},${cy - 5}L${cx + 6},${cy - 5}Z`;
    const mark = svg("path", { d, class: m.side === "BUY" ? "buy fill-mark" : "sell fill-mark" });
    const title = svg("title");
    title.textContent = `${m.side} at ${m.p}, ${new Date(m.t).toISOString().replace("T", " ").slice(0, 19)}`;
    mark.append(title);
    chart.append(mark);
  }
  return chart;
}
