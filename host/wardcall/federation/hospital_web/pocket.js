// A cross-ward team member's pocket console: every ward's calls of her teams' kinds, with
// Accept ("coming": the ward host records it with her name and team); it beeps and vibrates
// while one is not yet taken.
import { $, age, el, kindName, openCalls, post, start, state } from "./common.js";

let audio = null;
let lastBeep = 0;

function beep() {
  try {
    audio = audio || new AudioContext();
    const osc = audio.createOscillator();
    osc.frequency.value = 880;
    osc.connect(audio.destination);
    osc.start(); osc.stop(audio.currentTime + 0.25);
  } catch { /* no sound until the user has touched the page */ }
  if (navigator.vibrate) navigator.vibrate([300, 150, 300]);
}

async function accept(c, button) {
  button.disabled = true;
  try {
    await post(`/api/calls/${encodeURIComponent(c.ward)}/${c.id}/accept`);
    button.textContent = "Accepted";
  } catch (err) {
    button.disabled = false;
    button.textContent = `Accept (${err.message})`;
  }
}

function render() {
  const me = state.me;
  if (!me) return;
  const kinds = new Set(me.teams.flatMap((t) => t.kinds));
  $("team-name").textContent = me.teams.map((t) => t.name).join(", ") || "no team";
  const calls = openCalls((c) => kinds.has(c.kind));     // the kinds her teams are alerted for
  $("team-calls").replaceChildren(...calls.map((c) => {
    const button = el("button", { type: "button", class: "btn accept" }, c.state === "placed" ? "Accept" : "Accepted");
    button.disabled = c.state !== "placed";
    button.addEventListener("click", () => accept(c, button));
    return el("li", { class: "hcall", dataset: { priority: c.alarm_priority, state: c.state, ward: c.ward, call: c.id } },
      el("span", { class: "what" }, kindName(c)),
      el("span", { class: "where" }, `${c.ward_name} · room ${c.room}${c.bed ? " bed " + c.bed : ""}`),
      el("span", { class: "age" }, age(Date.now() / 1000 - c.placed_at)),
      el("span", { class: "by" }, c.acknowledged_by || ""), button);
  }));
  $("no-calls").hidden = calls.length > 0;
  if (calls.some((c) => c.state === "placed") && Date.now() - lastBeep > 2000) { lastBeep = Date.now(); beep(); }
}

start(render);
