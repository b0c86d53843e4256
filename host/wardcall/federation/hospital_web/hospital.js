// The house supervisor's console: emergencies of every ward, every ward's board, a ward filter,
// response times across wards (computed on the hospital service from the streams).
import { $, age, el, emergencies, kindName, start, state } from "./common.js";

let lastReport = 0;

function callItem(c, wardName) {
  return el("li", { class: "hcall", dataset: { priority: c.alarm_priority, state: c.state, ward: c.ward ?? "", call: c.id } },
    el("span", { class: "what" }, kindName(c)),
    el("span", { class: "where" }, `${wardName ? wardName + " · " : ""}room ${c.room}${c.bed ? " bed " + c.bed : ""}`),
    el("span", { class: "age" }, age(Date.now() / 1000 - c.placed_at)),
    el("span", { class: "by" }, c.acknowledged_by ? `${c.state} — ${c.acknowledged_by}` : c.state));
}

function fmt(v) { return v == null ? "—" : `${v.toFixed(1)} s`; }

async function renderReport() {
  const reply = await fetch("/api/report");
  if (!reply.ok) return;
  const rows = (await reply.json()).report;
  const body = $("report").tBodies[0];
  body.replaceChildren(...rows.map((r) => el("tr", { class: r.ward ? "" : "total", dataset: { ward: r.ward } },
    el("td", {}, r.ward_name), el("td", {}, r.kind.replace("_", " ")), el("td", {}, r.calls),
    el("td", {}, fmt(r.acknowledge.median)), el("td", {}, fmt(r.acknowledge.p90)),
    el("td", {}, fmt(r.attend.median)), el("td", {}, fmt(r.attend.p90)), el("td", {}, fmt(r.clear.median)))));
}

function render(what) {
  $("hospital-name").textContent = state.hospital || "wardcall hospital";
  $("console-alarms").replaceChildren(...state.consoleAlarms.map((text) => el("li", { class: "alarm" }, text)));
  const filter = $("ward-filter");
  const chosen = filter.value;
  if (filter.options.length !== state.wards.size + 1) {
    filter.replaceChildren(el("option", { value: "" }, "every ward"),
      ...[...state.wards.values()].map((w) => el("option", { value: w.id }, w.name)));
    filter.value = chosen;
  }
  const shown = (w) => !filter.value || w.id === filter.value;
  const em = emergencies((c, w) => shown(w));
  $("emergencies").replaceChildren(...em.map((c) => callItem(c, c.ward_name)));
  $("no-emergencies").hidden = em.length > 0;
  $("wards").replaceChildren(...[...state.wards.values()].filter(shown).map((w) => {
    const calls = [...w.calls.values()].sort((a, b) => a.kind - b.kind || a.placed_at - b.placed_at);
    const offline = [...w.terminals.values()].filter((t) => t.status !== "online").length;
    return el("article", { class: "hward", dataset: { ward: w.id } },
      el("h3", {}, el("span", {}, w.name), el("span", { class: "status" }, `${calls.length} open · ${w.terminals.size} terminals${offline ? `, ${offline} not online` : ""}`)),
      w.lost ? el("p", { class: "lost" }, `${w.lost} event(s) of this ward were lost on the way: its board may be behind`) : "",
      el("ul", { class: "hcalls" }, ...calls.map((c) => callItem(c, ""))),
      el("ul", { class: "alarms" }, ...[...w.alarms.values()].map((a) => el("li", { class: "alarm" }, a.text))));
  }));
  for (const row of $("report").tBodies[0].rows) row.hidden = Boolean(filter.value) && row.dataset.ward !== filter.value && row.dataset.ward !== "";
  if (what !== "tick" || Date.now() - lastReport > 10000) {
    if (what === undefined || what === "call" || Date.now() - lastReport > 10000) { lastReport = Date.now(); renderReport(); }
  }
}

$("ward-filter").addEventListener("change", () => render("filter"));
start(render);
