// Hand-drawn inline SVG charts for the history view (no libraries, nothing from the network).
import { svg, clockTime, pad2 } from "./dom.js";
import { KIND_ORDER, KIND_LABEL } from "./calls.js";

const W = 760, H = 260, L = 48, R = 12, T = 14, B = 40;

function niceMax(v) {
  if (v <= 5) return 5;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function axes(root, max, ticks = 5) {
  for (let i = 0; i <= ticks; i++) {
    const v = (max * i) / ticks, y = T + (H - T - B) * (1 - i / ticks);
    root.append(svg("line", { x1: L, x2: W - R, y1: y, y2: y, class: "grid" }));
    root.append(svg("text", { x: L - 6, y: y + 4, class: "tick", "text-anchor": "end" }, Number.isInteger(v) ? v : v.toFixed(1)));
  }
}

function legend(root, keys, labels, y = H - 6) {
  let x = L;
  for (const k of keys) {
    root.append(svg("rect", { x, y: y - 10, width: 12, height: 12, class: `k-${k}` }));
    root.append(svg("text", { x: x + 16, y, class: "legend" }, labels[k]));
    x += 24 + labels[k].length * 8;
  }
}

/** Stacked bars of calls per time bucket, by kind. */
export function callsOverTime(calls, since, until) {
  const span = until - since;
  const bucket = span <= 12 * 3600 ? 1800 : span <= 2 * 86400 ? 3600 : span <= 8 * 86400 ? 6 * 3600 : 86400;
  const n = Math.max(1, Math.ceil(span / bucket));
  const counts = Array.from({ length: n }, () => Object.fromEntries(KIND_ORDER.map((k) => [k, 0])));
  for (const c of calls) {
    const i = Math.min(n - 1, Math.floor((c.placed_at - since) / bucket));
    if (i >= 0 && counts[i][c.kind_name] !== undefined) counts[i][c.kind_name] += 1;
  }
  const max = niceMax(Math.max(1, ...counts.map((b) => KIND_ORDER.reduce((s, k) => s + b[k], 0))));
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${calls.length} calls` });
  axes(root, max);
  const bw = (W - L - R) / n;
  const every = Math.ceil(n / 12);
  counts.forEach((b, i) => {
    let y = H - B;
    const x = L + i * bw;
    for (const k of KIND_ORDER) {
      if (!b[k]) continue;
      const hgt = ((H - T - B) * b[k]) / max;
      y -= hgt;
      root.append(svg("rect", { x: x + 1, y, width: Math.max(1, bw - 2), height: hgt, class: `bar k-${k}` },
        svg("title", {}, `${b[k]} ${KIND_LABEL[k]}`)));
    }
    if (i % every === 0) {
      const t = since + i * bucket, d = new Date(t * 1000);
      const label = bucket >= 86400 ? `${pad2(d.getDate())}.${pad2(d.getMonth() + 1)}` : clockTime(t);
      root.append(svg("text", { x: x + 2, y: H - B + 14, class: "tick" }, label));
    }
  });
  legend(root, KIND_ORDER, KIND_LABEL);
  return root;
}

const BINS = [[0, 15, "<15 s"], [15, 30, "15–30 s"], [30, 60, "30–60 s"], [60, 120, "1–2 min"],
  [120, 300, "2–5 min"], [300, 600, "5–10 min"], [600, Infinity, ">10 min"]];

/** Histogram of response times: placed → acknowledged and placed → attended. */
export function responseHistogram(calls) {
  const series = { ack: BINS.map(() => 0), attend: BINS.map(() => 0) };
  const add = (key, dt) => {
    if (dt === null || dt < 0) return;
    const i = BINS.findIndex(([lo, hi]) => dt >= lo && dt < hi);
    if (i >= 0) series[key][i] += 1;
  };
  for (const c of calls) {
    add("ack", c.acknowledged_at === null ? null : c.acknowledged_at - c.placed_at);
    add("attend", c.attended_at === null ? null : c.attended_at - c.placed_at);
  }
  const max = niceMax(Math.max(1, ...series.ack, ...series.attend));
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "response time distribution" });
  axes(root, max);
  const gw = (W - L - R) / BINS.length, bw = (gw - 10) / 2;
  BINS.forEach(([, , label], i) => {
    const x = L + i * gw + 5;
    [["ack", 0], ["attend", 1]].forEach(([key, j]) => {
      const v = series[key][i], hgt = ((H - T - B) * v) / max;
      root.append(svg("rect", { x: x + j * bw, y: H - B - hgt, width: bw - 2, height: hgt, class: `bar s-${key}` },
        svg("title", {}, `${v} calls ${key === "ack" ? "acknowledged" : "attended"} ${label}`)));
    });
    root.append(svg("text", { x: x + gw / 2 - 5, y: H - B + 14, class: "tick", "text-anchor": "middle" }, label));
  });
  legend(root, ["ack", "attend"], { ack: "acknowledged", attend: "staff in the room" });
  return root;
}
