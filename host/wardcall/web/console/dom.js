// DOM helpers. Everything that comes from the host (device ids, room names, user names, alarm
// texts) is put on the page as text nodes or properties, never parsed as HTML.

/** h("div", {className: "x", dataset: {id: 1}, onclick: fn}, "text", child, …) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "className" || k === "textContent" || k === "title" || k === "type" || k === "disabled" || k === "hidden") el[k] = v;
    else el.setAttribute(k, String(v));
  }
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function setText(el, text) {
  const t = String(text ?? "");
  if (el.textContent !== t) el.textContent = t;
}

export function pad2(n) {
  return String(n).padStart(2, "0");
}

/** 75 → "01:15"; 3725 → "1:02:05" */
export function elapsed(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hours = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return hours ? `${hours}:${pad2(m)}:${pad2(sec)}` : `${pad2(m)}:${pad2(sec)}`;
}

/** unix seconds → "14:05" (or "14:05:09" with seconds) in local time */
export function clockTime(unix, seconds = false) {
  if (unix === null || unix === undefined) return "";
  const d = new Date(unix * 1000);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}` + (seconds ? `:${pad2(d.getSeconds())}` : "");
}

/** a duration in seconds for tables: "42 s", "3.5 min", "1.2 h" */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** A toast(text, error) function showing text in el for ms, then hiding it (a newer one replaces it). */
export function toaster(el, ms) {
  let timer = null;
  return (text, error = false) => {
    setText(el, text);
    el.dataset.error = String(error);
    el.hidden = false;
    clearTimeout(timer);
    timer = setTimeout(() => { el.hidden = true; }, ms);
  };
}
