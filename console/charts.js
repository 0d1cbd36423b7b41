// Charts drawn by hand in SVG: a line chart over time and the ring. A few dozen lines do what
// the console needs, with no library to vendor, audit or keep current.

const NS = "http://www.w3.org/2000/svg";

function el(name, attrs = {}, parent = null) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (parent !== null) parent.appendChild(e);
  return e;
}

const COLORS = ["#2563eb", "#dc6803", "#079455", "#c11574", "#6938ef", "#0e9384", "#667085"];

/** Color of series / member i. */
export function color(i) {
  return COLORS[i % COLORS.length];
}

/**
 * A line chart of `series` ([{name, points: [[t_ms, value], ...]}]) over the last `span_ms`,
 * `unit` after the axis figures; `min`/`max` fix the y range (else 0 .. the largest value).
 */
export function lineChart(series, { title, unit = "", span_ms = 5 * 60_000, min, max } = {}) {
  const w = 460, h = 170, left = 48, right = 10, top = 10, bottom = 22;
  const wrap = document.createElement("div");
  wrap.className = "chart";
  const caption = document.createElement("div");
  caption.className = "title";
  caption.textContent = title;
  wrap.appendChild(caption);
  const svg = el("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: "img" }, wrap);
  const now = Date.now();
  const t0 = now - span_ms;
  let hi = max ?? 0;
  if (max === undefined) {
    for (const s of series) {
      for (const [, v] of s.points) if (Number.isFinite(v)) hi = Math.max(hi, v);
    }
    if (hi === 0) hi = 1;
  }
  const lo = min ?? 0;
  const x = (t) => left + ((t - t0) / span_ms) * (w - left - right);
  const y = (v) => top + (1 - (v - lo) / (hi - lo || 1)) * (h - top - bottom);
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    el("line", { x1: left, x2: w - right, y1: y(v), y2: y(v), stroke: "#eef0f3" }, svg);
    el("text", { x: left - 4, y: y(v) + 4, "text-anchor": "end" }, svg).textContent = `${
      fmt(v)
    }${unit}`;
  }
  el("text", { x: left, y: h - 6 }, svg).textContent = `-${Math.round(span_ms / 60_000)} min`;
  el("text", { x: w - right, y: h - 6, "text-anchor": "end" }, svg).textContent = "now";
  series.forEach((s, i) => {
    const pts = s.points.filter(([t, v]) => t >= t0 && Number.isFinite(v));
    if (pts.length === 0) return;
    const d = pts.map(([t, v], j) => `${j === 0 ? "M" : "L"}${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    el("path", { d: d.join(""), fill: "none", stroke: color(i), "stroke-width": 1.6 }, svg);
    const [lt, lv] = pts[pts.length - 1];
    el("circle", { cx: x(lt), cy: y(lv), r: 2.5, fill: color(i) }, svg);
  });
  if (series.length > 1) {
    const legend = document.createElement("div");
    legend.className = "hint";
    series.forEach((s, i) => {
      const item = document.createElement("span");
      item.style.color = color(i);
      item.textContent = `■ ${s.name}  `;
      legend.appendChild(item);
    });
    wrap.appendChild(legend);
  }
  return wrap;
}

/** Short figure: 1234 -> "1.2k". */
export function fmt(v) {
  if (!Number.isFinite(v)) return "–";
  const a = Math.abs(v);
  if (a >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (a >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  if (a >= 10 || a === 0) return v.toFixed(0);
  return v.toFixed(a >= 1 ? 1 : 3);
}

/**
 * The ring as a donut: one arc per member, its angle its share of the hash space
 * (`members`: [{address, share, state}]).
 */
export function ringChart(members) {
  const size = 220, r = 90, c = size / 2;
  const svg = el("svg", { width: size, height: size, viewBox: `0 0 ${size} ${size}`, role: "img" });
  el("circle", { cx: c, cy: c, r, fill: "none", stroke: "#eef0f3", "stroke-width": 26 }, svg);
  let a0 = -Math.PI / 2;
  members.forEach((m, i) => {
    const a1 = a0 + m.share * 2 * Math.PI;
    const large = a1 - a0 > Math.PI ? 1 : 0;
    const p = (a) => `${(c + r * Math.cos(a)).toFixed(2)},${(c + r * Math.sin(a)).toFixed(2)}`;
    const d = m.share >= 0.9999
      ? `M${c},${c - r}A${r},${r} 0 1 1 ${c - 0.01},${c - r}`
      : `M${p(a0)}A${r},${r} 0 ${large} 1 ${p(a1)}`;
    const arc = el("path", {
      d,
      fill: "none",
      stroke: color(i),
      "stroke-width": 26,
      "stroke-dasharray": m.state === "alive" || m.state === undefined ? "none" : "6 4",
    }, svg);
    el("title", {}, arc).textContent = `${m.address}: ${(m.share * 100).toFixed(1)}%`;
    a0 = a1;
  });
  el("text", { x: c, y: c + 4, "text-anchor": "middle" }, svg).textContent =
    `${members.length} node${members.length === 1 ? "" : "s"}`;
  return svg;
}
