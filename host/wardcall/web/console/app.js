// The wardcall nurse console: a client of the host's API (docs/HOST.md). State comes from the
// SSE stream (/api/events: a snapshot, then changes); actions are POSTs. No build step.
import { h, fill, setText, elapsed, clockTime, duration, toaster } from "./dom.js";
import { Sounder, LEVELS } from "./sound.js";
import { callsOverTime, responseHistogram } from "./charts.js";
import { KIND_ORDER, KIND_LABEL, PATTERN_OF_KIND, STEP_LABEL, syncBlink, routeText, nameOf, takeIntegrations, patientText, alertStatusText } from "./calls.js";
import { AssignmentGrid } from "./assign.js";
import { callApi, hostAnswers, loginHandler, markConnected, markLost, resumeSession, retryLater, SESSION_GONE, takeEvent } from "./hostlink.js";

const $ = (id) => document.getElementById(id);

const STATE_TEXT = { placed: "Waiting", acknowledged: "Seen — coming", attended: "Staff in the room", escalated: "Waiting" };
const SILENCE_S = 120;
const HEALTH_EVERY_MS = 3000;
const HEALTH_TIMEOUT_MS = 2500;

const state = {
  ward: "", seq: 0, offset: 0,          // offset: host clock − this PC's clock (s)
  calls: new Map(), terminals: new Map(), rooms: new Map(), alarms: new Map(),
  updates: new Map(),                   // over-the-air update progress by "job/device"
  staff: new Map(),                     // care staff by login: on shift, reachable, where (badge)
  assignment: null,                     // this shift's assignment (/api/assignment), if the host keeps one
  sound: { audible: false, silenced_until: null, silenced_by: null },
  layout: null,                         // rooms with all their beds (/api/layout), if the host has it
  patients: new Map(),                  // "room/bed" -> the patient there (hospital ADT), if the host has it
  alertStatus: new Map(),               // call id -> the Alert Manager's latest status (PCD-05)
  user: null,
};
const link = { es: null, connected: false, lostSince: null, attempts: 0, retry: null, health: null, healthFails: 0 };
const sounder = new Sounder();
let grid = null;                        // the assignment grid (assign.js), made in main()
window.wardcall = { state, link, sounder };   // for the curious (and the tests)

const now = () => Date.now() / 1000 + state.offset;

// ---------------------------------------------------------------- connection

/** The user may do this (their role allows it; the host checks again). */
const may = (action) => !!(state.user && state.user.may && state.user.may.includes(action));

/** The host's API with this session's request token. */
const api = (method, path, body) => callApi(method, path, body, state.user && state.user.token);

function connect() {
  clearTimeout(link.retry);
  if (link.es) link.es.close();
  const es = new EventSource("/api/events");
  link.es = es;
  es.addEventListener("snapshot", (e) => { if (es === link.es) onSnapshot(JSON.parse(e.data)); });
  for (const name of ["call", "terminal", "room", "alarm", "sound", "log", "ota", "staff", "assignment", "patient", "alert_status"]) {
    es.addEventListener(name, (e) => { if (es === link.es) onChange(name, JSON.parse(e.data)); });
  }
  es.onerror = () => { if (es === link.es) lost("the event stream ended"); };
}

function lost(why) {
  if (link.es) { link.es.close(); link.es = null; }
  markLost(link, why, "wardcall");
  showLink();
  update();
  retryLater(link, reconnect);
}

async function reconnect() {
  const me = await resumeSession(link, api, {
    showLink, reconnect, sessionGone: () => showLogin(state.user && state.user.user ? SESSION_GONE : ""),
  });
  if (!me) return;
  if (!state.user || !state.user.user) await started(me);
  else connect();                         // its snapshot brings everything up to date
}

/** A dead host does not always end the TCP stream: ask /api/health every few seconds. */
async function healthCheck() {
  if (!link.connected) return;
  if (await hostAnswers(HEALTH_TIMEOUT_MS)) link.healthFails = 0;
  else if (++link.healthFails >= 2) lost("the host does not answer");
}

function onSnapshot(snap) {
  state.seq = snap.seq;
  state.aheadSeq = new Map();            // calls sent ahead of a backlog (hostlink.js)
  state.ward = snap.ward;
  state.offset = snap.time - Date.now() / 1000;
  state.calls = new Map(snap.calls.map((c) => [c.id, c]));
  state.terminals = new Map(snap.terminals.map((t) => [t.device, t]));
  state.rooms = new Map(snap.rooms.map((r) => [r.id, r]));
  state.alarms = new Map(snap.alarms.map((a) => [a.id, a]));
  state.staff = new Map((snap.staff || []).map((s) => [s.user, s]));
  state.sound = snap.sound;
  takeIntegrations(state, snap);
  const wasLost = markConnected(link);
  showLink();
  if (wasLost) toast("Connection to the host restored — the board is up to date.");
  update();
}

function onChange(name, data) {
  if (!takeEvent(state, name, data)) switch (name) {     // calls, rooms, terminals, staff: taken
    case "alarm":
      if (data.active) state.alarms.set(data.alarm.id, data.alarm);
      else state.alarms.delete(data.alarm.id);
      break;
    case "sound": state.sound = data.sound; break;
    case "log": activity(data); return;
    case "ota": state.updates.set(`${data.job}/${data.update.device}`, { job: data.job, version: data.version, ...data.update }); break;
    case "assignment":
      if (!state.assignment || data.assignment.shift === state.assignment.shift || data.assignment.starts > state.assignment.starts) state.assignment = data.assignment;
      grid.changed(data.assignment);
      break;
  }
  update();
}

// ---------------------------------------------------------------- rendering

function sortedCalls() {
  return [...state.calls.values()].sort((a, b) => a.priority - b.priority || a.placed_at - b.placed_at || a.id - b.id);
}

/** A login as people read it: the name the host gives (staff, assignment), else the login. */
function staffName(login) {
  if (!login) return "";
  const s = state.staff.get(login);
  if (s && s.name) return s.name;
  return nameOf(state.assignment && state.assignment.staff, login);
}

function roomName(id) {
  const room = state.rooms.get(id) || (state.layout && state.layout.rooms.find((r) => r.id === id));
  return room ? room.name : `Room ${id}`;
}

function callCard(call) {
  const el = h("li", { className: "call", dataset: { id: call.id } },
    h("div", { className: "lamp", "aria-hidden": "true" }),
    h("div", { className: "what" },
      h("div", { className: "kind" }),
      h("div", { className: "where" }),
      h("div", { className: "status" }),
      h("div", { className: "route" })),
    h("div", { className: "side" },
      h("div", { className: "elapsed", title: "time since the call was placed" }),
      h("button", { type: "button", className: "btn btn-ack", onclick: () => acknowledge(call.id, el) }, "Acknowledge"),
      h("div", { className: "clear-note" }, "clear at the bedside")));
  return el;
}

function updateCard(el, call) {
  const pattern = PATTERN_OF_KIND[call.kind_name] || "normal";
  const changed = el.dataset.pattern !== pattern || el.dataset.state !== call.state;
  Object.assign(el.dataset, { kind: call.kind_name, state: call.state, priority: call.alarm_priority, pattern,
    device: call.device, terminal: call.terminal_status });
  if (changed) for (const sel of [el, el.querySelector(".lamp")]) syncBlink(sel, pattern);
  // emergencies (high priority) are announced ward-wide at once: escalation 1 is their normal start
  const escalated = call.escalation - (call.alarm_priority === "high" ? 1 : 0);
  setText(el.querySelector(".kind"), (KIND_LABEL[call.kind_name] || call.kind_name) + (escalated > 0 ? `  ·  escalated ×${escalated}` : "") +
    (call.realerts ? `  ·  again ×${call.realerts}` : ""));
  const patient = patientText(state, call.room, call.bed);
  setText(el.querySelector(".where"), `${roomName(call.room)} · Bed ${call.bed}${patient ? ` · ${patient}` : ""}`);
  let status = STATE_TEXT[call.state] || call.state;
  const paging = alertStatusText(state, call.id);
  if (paging) status += ` · ${paging}`;
  if (call.state === "acknowledged" && call.acknowledged_by) status += ` (${staffName(call.acknowledged_by)}, ${clockTime(call.acknowledged_at)})`;
  if (call.state === "attended" && call.attended_by) status += ` (${staffName(call.attended_by)})`;
  if (call.terminal_status && call.terminal_status !== "online") status += ` · terminal ${call.terminal_status}`;
  if (call.recorded === false) status += " · NOT RECORDED";
  el.dataset.recorded = String(call.recorded !== false);
  setText(el.querySelector(".status"), status);
  updateRoute(el, call);
  el.querySelector(".btn-ack").hidden = call.state !== "placed" || !may("acknowledge");
  el.setAttribute("aria-label", `${KIND_LABEL[call.kind_name] || call.kind_name} call, ${roomName(call.room)} bed ${call.bed}, ${status}`);
}

/** Where the call's route stands: to whom, who declined, who was skipped and why, when it passes on. */
function updateRoute(el, call) {
  const line = el.querySelector(".route");
  const r = call.route;
  line.hidden = !r;
  if (!r) return;
  Object.assign(line.dataset, { step: (r.steps && r.steps[r.step]) || "", declined: String((r.declined || []).length),
    skipped: String((r.skipped || []).length) });
  setText(line, routeText(call, staffName, now()));
}

function renderCalls() {
  const list = $("calls");
  const existing = new Map([...list.children].map((el) => [Number(el.dataset.id), el]));
  const calls = sortedCalls();
  calls.forEach((call, i) => {
    let el = existing.get(call.id);
    if (!el) el = callCard(call);
    existing.delete(call.id);
    updateCard(el, call);
    if (list.children[i] !== el) list.insertBefore(el, list.children[i] || null);
  });
  for (const el of existing.values()) el.remove();
  $("no-calls").hidden = calls.length > 0;
  document.body.dataset.top = calls.length ? calls[0].kind_name : "none";
  tick();
}

function terminalFor(room, bed) {
  return [...state.terminals.values()].find((t) => t.room === room && t.bed === bed);
}

function renderMap() {
  const rooms = state.layout ? state.layout.rooms.map((r) => ({ ...r, ...(state.rooms.get(r.id) || {}) }))
    : [...state.rooms.values()].map((r) => ({ ...r, beds: [] }));
  // beds that have a terminal but are not in the layout (or no layout): add them
  for (const t of state.terminals.values()) {
    let room = rooms.find((r) => r.id === t.room);
    if (!room) rooms.push(room = { id: t.room, name: `Room ${t.room}`, beds: [], presence: false });
    if (!room.beds.includes(t.bed)) room.beds.push(t.bed);
  }
  const calls = sortedCalls();
  const located = [...state.staff.values()].filter((s) => s.room);
  fill($("rooms"), rooms.map((room) => {
    const presence = !!room.presence;
    // who is here: staff located in this room by their badge; plain presence says only "staff"
    const here = located.filter((s) => s.room === room.id).map((s) => s.name || s.user);
    return h("div", { className: "room", dataset: { room: room.id, presence: String(presence), staff: here.join(", ") } },
      h("div", { className: "room-head" },
        h("span", { className: "room-name" }, room.name || `Room ${room.id}`),
        here.length ? h("span", { className: "staff staff-names" }, `● ${here.join(", ")}`)
          : presence ? h("span", { className: "staff" }, "● Staff present") : null),
      h("div", { className: "beds" }, room.beds.map((bed) => {
        const t = terminalFor(room.id, bed);
        const call = calls.find((c) => c.room === room.id && c.bed === bed);
        const status = t ? t.status : "none";
        const pattern = call ? (PATTERN_OF_KIND[call.kind_name] || "normal") : "";
        const actions = t && (may("identify") || may("lamp_test") || may("reboot"));
        const el = h(actions ? "button" : "div", {
          className: "bed", title: t ? `${t.device} · ${t.status}${t.firmware ? " · " + t.firmware : ""}` : "no terminal",
          type: actions ? "button" : undefined,
          dataset: { bed, status, device: t ? t.device : "", call: call ? call.kind_name : "", state: call ? call.state : "", pattern },
          onclick: actions ? () => openTerminal(t.device) : undefined,
        },
        h("span", { className: "bed-name" }, `Bed ${bed}`),
        patientText(state, room.id, bed) ? h("span", { className: "bed-patient" }, patientText(state, room.id, bed)) : null,
        h("span", { className: "bed-status" }, statusText(t)));
        if (pattern) syncBlink(el, pattern);
        return el;
      })));
  }));
  // devices trying to connect: untrusted ids, shown as text only
  const attempts = [...state.alarms.values()].filter((a) => a.kind === "device_trying_to_connect");
  fill($("unknown-devices"), attempts.length ? h("h3", {}, "Unknown devices") : null,
    attempts.map((a) => h("div", { className: "unknown", dataset: { status: "unknown" } },
      h("span", { className: "device-id" }, a.claimed_device || a.device || "?"),
      h("span", {}, ` ${a.reason || ""}${a.address ? " · " + a.address : ""} · ×${a.count}`))));
}

const REACH_TEXT = { "logged out": "logged out", "phone silent": "phone silent" };

/** Who is where: the staff on shift (and anyone else a badge has placed in a room); where her
 * badge last put her, and whether calls can reach her phone. */
function renderStaff() {
  const staff = [...state.staff.values()].filter((s) => s.on_shift || s.room)
    .sort((a, b) => Number(b.on_shift) - Number(a.on_shift) || (a.name || a.user).localeCompare(b.name || b.user));
  $("staff-box").hidden = staff.length === 0;
  fill($("staff-list"), staff.map((s) => h("li", {
    className: "staff-item", dataset: { user: s.user, room: s.room || "", onShift: String(!!s.on_shift), reachable: String(!!s.reachable) },
  },
  h("span", { className: "staff-name" }, s.name || s.user),
  h("span", { className: "staff-where" }, s.room ? `${roomName(s.room)}${s.since ? ` since ${clockTime(s.since)}` : ""}` : "—"),
  h("span", { className: "staff-reach" }, !s.on_shift ? "off shift" : s.reachable ? "phone on" : REACH_TEXT[s.why_not] || s.why_not || "not reachable"))));
}

function statusText(t) {
  if (!t) return "no terminal";
  if (t.status === "fault") return `fault${t.faults && t.faults.length ? ": " + t.faults.join(", ") : ""}`;
  return t.status;
}

function renderAlarms() {
  const alarms = [...state.alarms.values()].sort((a, b) => a.since - b.since);
  $("alarms-box").hidden = alarms.length === 0;
  setText($("alarm-count"), alarms.length > 1 ? `(${alarms.length})` : "");
  fill($("alarms"), alarms.map((a) => h("li", { className: "alarm", dataset: { kind: a.kind, id: a.id } },
    h("span", { className: "alarm-icon", "aria-hidden": "true" }, "⚠"),
    h("span", { className: "alarm-text" }, alarmText(a)),
    h("span", { className: "alarm-since" }, `since ${clockTime(a.since)}${a.count > 1 ? ` · ×${a.count}` : ""}`))));
}

function alarmText(a) {
  if (a.kind === "device_trying_to_connect") {
    return `Device trying to connect: "${a.claimed_device || a.device || "?"}"${a.address ? ` from ${a.address}` : ""}${a.reason ? ` (${a.reason})` : ""}`;
  }
  return a.text || a.kind;
}

// ---------------------------------------------------------------- sound

function wantedSound() {
  // nothing is known while the link is down: a low technical tone says so
  if (!link.connected) return link.lostSince !== null && state.user ? "low" : null;
  const waiting = [...state.calls.values()].filter((c) => c.state === "placed");
  const levels = waiting.map((c) => c.alarm_priority);
  // an emergency (high priority, not yet acknowledged) overrides silence
  if (levels.includes("high")) return "high";
  if (!state.sound.audible) return null;
  if (state.alarms.size && ![...state.alarms.values()].every((a) => a.kind === "device_trying_to_connect")) levels.push("low");
  return LEVELS.filter((l) => levels.includes(l)).pop() || (state.sound.audible ? "low" : null);
}

function renderSound() {
  const level = wantedSound();
  sounder.set(level);
  document.body.dataset.sound = level || "off";
  const silenced = state.sound.silenced_until && state.sound.silenced_until > now();
  document.body.dataset.silenced = String(!!silenced);
  let text = level ? `Sound: ${level} priority` : "Quiet";
  // a silence is the whole ward's (every console), and the text says so
  if (silenced) text = (level === "high" ? "Emergency sounds despite silence · " : "") +
    `Ward silenced until ${clockTime(state.sound.silenced_until)}${state.sound.silenced_by ? ` by ${state.sound.silenced_by}` : ""}`;
  setText($("sound-status"), text);
  $("audio-unlock").hidden = !(state.user && sounder.blocked);
}

// ---------------------------------------------------------------- the rest of the page

function showLink() {
  const isLost = link.lostSince !== null && state.user !== null;
  $("lost").hidden = !isLost;
  document.body.dataset.connection = link.connected ? "live" : isLost ? "lost" : "starting";
  if (isLost) setText($("lost-detail"), `since ${clockTime(link.lostSince, true)} — reconnecting${link.attempts ? ` (attempt ${link.attempts})` : ""}…`);
}

function update() {
  setText($("ward-name"), state.ward || "wardcall");
  document.title = `${state.calls.size ? `(${state.calls.size}) ` : ""}${state.ward || "wardcall"} — nurse console`;
  renderCalls();
  renderMap();
  renderStaff();
  renderAlarms();
  renderUpdates();
  renderSound();
}

// ---------------------------------------------------------------- over-the-air updates

const UPDATE_TEXT = { queued: "waiting", sending: "sending", committing: "installing", rebooting: "restarting",
  trial: "on trial", ok: "updated", failed: "failed", rolled_back: "rolled back", skipped: "skipped" };

function renderUpdates() {
  const updates = [...state.updates.values()].sort((a, b) => b.job - a.job || a.device.localeCompare(b.device));
  $("ota-box").hidden = updates.length === 0;
  fill($("ota"), updates.slice(0, 30).map((u) => {
    const pct = u.total ? Math.floor((100 * (u.sent || 0)) / u.total) : 0;
    return h("li", { className: "ota-item", dataset: { state: u.state, device: u.device } },
      h("span", { className: "device-id" }, u.device),
      h("span", {}, ` ${u.version} · ${UPDATE_TEXT[u.state] || u.state}${u.state === "sending" ? ` ${pct} %` : ""}`),
      u.detail ? h("span", { className: "ota-detail" }, ` — ${u.detail}`) : null);
  }));
}

async function loadUpdates() {
  if (!may("update")) return;
  try {
    const jobs = await api("GET", "/api/ota/updates");
    for (const job of jobs) for (const u of job.devices) state.updates.set(`${job.job}/${u.device}`, { job: job.job, version: job.version, ...u });
    renderUpdates();
  } catch { /* shown when the next event comes */ }
}

// ---------------------------------------------------------------- terminal actions (charge nurse, technician)

let dialogDevice = null;

function openTerminal(device) {
  const t = state.terminals.get(device);
  if (!t) return;
  dialogDevice = device;
  setText($("terminal-title"), `${roomName(t.room)} · Bed ${t.bed}`);
  setText($("terminal-info"), `${t.device} · ${statusText(t)}${t.firmware ? " · firmware " + t.firmware : ""}`);
  for (const name of ["identify", "lamp_test", "reboot"]) $(`cmd-${name}`).hidden = !may(name);
  $("terminal-password-row").hidden = true;
  $("terminal-confirm").hidden = true;
  $("terminal-password").value = "";
  setText($("terminal-error"), "");
  $("terminal-dialog").showModal();
}

async function terminalCommand(command, password) {
  const body = password === undefined ? { command } : { command, password };
  try {
    await api("POST", `/api/terminals/${encodeURIComponent(dialogDevice)}/command`, body);
    toast(`${command.replace("_", " ")} sent to ${dialogDevice}`);
    $("terminal-dialog").close();
  } catch (err) {
    setText($("terminal-error"), err.message);
  }
}

// ---------------------------------------------------------------- sessions (administrators)

async function loadSessions() {
  let data;
  try { data = await api("GET", "/api/sessions"); } catch (err) { toast(`Cannot list sessions: ${err.message}`, true); return; }
  const users = [...new Set(data.sessions.map((s) => s.user))];
  fill($("table-sessions"),
    h("thead", {}, h("tr", {}, ["User", "Sessions", "Latest activity", ""].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, users.map((u) => {
      const mine = data.sessions.filter((s) => s.user === u);
      return h("tr", { dataset: { user: u } }, h("th", { scope: "row" }, u), h("td", {}, mine.length),
        h("td", {}, clockTime(Math.max(...mine.map((s) => s.last)))),
        h("td", {}, h("button", { type: "button", className: "btn btn-small", onclick: () => endSessions(u) }, "End all sessions")));
    })));
}

async function endSessions(user) {
  try {
    const { ended } = await api("POST", `/api/users/${encodeURIComponent(user)}/sessions/end`);
    toast(`${ended} session(s) of ${user} ended`);
  } catch (err) { toast(`Cannot end the sessions: ${err.message}`, true); }
  if (user !== state.user.user) loadSessions();
}

/** Once a second: elapsed times and the clock, without touching anything else. */
function tick() {
  const t = now();
  for (const el of $("calls").children) {
    const call = state.calls.get(Number(el.dataset.id));
    if (!call) continue;
    setText(el.querySelector(".elapsed"), elapsed(t - call.placed_at));
    if (call.route && call.route.next_at) updateRoute(el, call);
  }
  setText($("clock"), clockTime(t, true));
}

const toast = toaster($("toast"), 6000);

function activity(entry) {
  const what = { console_login: "logged in", console_logout: "logged out", silence: `silenced the ward for ${entry.seconds} s`,
    command_sent: `sent ${entry.command || "a command"} to ${entry.device || "a terminal"}` }[entry.kind] || entry.kind;
  setText($("activity"), `${clockTime(entry.wall)} · ${entry.user || "host"} ${what}`);
}

async function acknowledge(id, el) {
  const button = el.querySelector(".btn-ack");
  button.disabled = true;
  try {
    const { call } = await api("POST", `/api/calls/${id}/acknowledge`);
    if (call) { state.calls.set(call.id, call); update(); }
  } catch (err) {
    if (err.status === 401) showLogin("Please log in again.");
    else toast(`Could not acknowledge: ${err.message}`, true);
  } finally {
    button.disabled = false;
  }
}

async function silence() {
  try {
    const { sound } = await api("POST", "/api/silence", { seconds: SILENCE_S });
    state.sound = sound;
    renderSound();
  } catch (err) {
    toast(`Could not silence: ${err.message}`, true);
  }
}

// ---------------------------------------------------------------- login

function showLogin(message = "") {
  state.user = null;
  if (link.es) { link.es.close(); link.es = null; }
  clearTimeout(link.retry);
  link.connected = false;
  link.lostSince = null;
  showLink();
  sounder.set(null);
  setText($("login-error"), message);
  $("login-screen").hidden = false;
  document.body.dataset.connection = "login";
  $("login-user").focus();
}

async function started(user) {
  state.user = user;
  link.attempts = 0;
  setText($("user-name"), user.name || user.user);
  setText($("user-role"), (user.role || "").replace("_", " "));
  document.body.dataset.role = user.role || "";
  $("silence").hidden = !may("silence");
  $("tab-admin").hidden = !may("users");
  loadUpdates();
  $("login-screen").hidden = true;
  sounder.unlock();
  try { state.layout = await api("GET", "/api/layout"); } catch { state.layout = null; }
  try { state.assignment = await api("GET", "/api/assignment"); } catch { state.assignment = null; }
  connect();
}


async function logout() {
  try { await api("POST", "/api/logout"); } catch { /* already gone */ }
  showLogin("Logged out.");
}

// ---------------------------------------------------------------- history

async function loadHistory() {
  const since = $("period").value;
  $("csv").href = `/api/report.csv?since=${encodeURIComponent(since)}`;
  setText($("history-status"), "loading…");
  let rep;
  try {
    rep = await api("GET", `/api/report?since=${encodeURIComponent(since)}`);
  } catch (err) {
    setText($("history-status"), err.status === 404 ? "This host does not offer history (console routes not installed)." : `Cannot load: ${err.message}`);
    return;
  }
  setText($("history-status"), `${rep.total} calls ${clockTime(rep.since)} – ${clockTime(rep.until)}`);
  fill($("chart-calls"), callsOverTime(rep.calls, rep.since, rep.until));
  fill($("chart-response"), responseHistogram(rep.calls));
  const rows = (by) => rep.summary.filter((r) => r.group_by === by);
  reportTable($("table-rooms"), "Room", rows("room").map((r) => ({ ...r, label: roomName(r.group) })));
  reportTable($("table-kinds"), "Call type", rows("kind").sort((a, b) => KIND_ORDER.indexOf(a.group) - KIND_ORDER.indexOf(b.group))
    .map((r) => ({ ...r, label: KIND_LABEL[r.group] || r.group })));
  // routing: who accepted how fast (from when the call reached her), which step took calls, and
  // how many had to be passed on
  const counts = Object.fromEntries(rows("routing").map((r) => [r.group, r.calls]));
  setText($("routing-counts"), rows("routing").length
    ? `${counts.routed || 0} calls routed · ${counts["passed on at least once"] || 0} passed on at least once · ${counts["placed on an unassigned bed"] || 0} on a bed with no nurse`
    : "");
  acceptTable($("table-nurses"), "Nurse", rows("nurse").map((r) => ({ ...r, label: staffName(r.group) })));
  acceptTable($("table-steps"), "Accepted at the step", rows("step").map((r) => ({ ...r, label: STEP_LABEL[r.group] || r.group })));
}

function acceptTable(table, first, rows) {
  const head = [first, "Calls accepted", "Time to accept: median", "max"];
  fill(table,
    h("thead", {}, h("tr", {}, head.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.length ? rows.map((r) => h("tr", { dataset: { group: r.group } },
      h("th", { scope: "row" }, r.label), h("td", {}, r.calls),
      h("td", {}, duration(r.times.accept && r.times.accept.median)), h("td", {}, duration(r.times.accept && r.times.accept.max))))
      : h("tr", {}, h("td", { colspan: head.length }, "No call accepted in this period"))));
}

function reportTable(table, first, rows) {
  const head = [first, "Calls", "Acknowledged: median", "max", "Staff in room: median", "max", "Cleared: median"];
  fill(table,
    h("thead", {}, h("tr", {}, head.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.length ? rows.map((r) => h("tr", {},
      h("th", { scope: "row" }, r.label), h("td", {}, r.calls),
      h("td", {}, duration(r.times.acknowledge.median)), h("td", {}, duration(r.times.acknowledge.max)),
      h("td", {}, duration(r.times.attend.median)), h("td", {}, duration(r.times.attend.max)),
      h("td", {}, duration(r.times.clear.median))))
      : h("tr", {}, h("td", { colspan: head.length }, "No calls in this period"))));
}

function showView(name) {
  document.body.dataset.view = name;
  for (const view of ["board", "assign", "history", "admin"]) {
    $(`view-${view}`).hidden = name !== view;
    $(`tab-${view}`).setAttribute("aria-pressed", String(name === view));
  }
  if (name === "history") loadHistory();
  if (name === "admin") loadSessions();
  if (name === "assign") grid.load();
}

// ---------------------------------------------------------------- start

async function main() {
  grid = new AssignmentGrid({
    api, may, toast, roomName,
    rooms: () => (state.layout ? state.layout.rooms : [...state.rooms.values()].map((r) => ({ ...r, beds: [] }))),
  });
  window.wardcall.grid = grid;
  $("login").addEventListener("submit", loginHandler({ api, sounder, started, setText, $ }));
  $("logout").addEventListener("click", logout);
  $("silence").addEventListener("click", silence);
  $("silence").textContent = `Silence ward ${SILENCE_S / 60} min`;
  $("tab-board").addEventListener("click", () => showView("board"));
  $("tab-history").addEventListener("click", () => showView("history"));
  $("tab-assign").addEventListener("click", () => showView("assign"));
  $("tab-admin").addEventListener("click", () => showView("admin"));
  for (const name of ["identify", "lamp_test"]) $(`cmd-${name}`).addEventListener("click", () => terminalCommand(name));
  $("cmd-reboot").addEventListener("click", () => {
    $("terminal-password-row").hidden = false;
    $("terminal-confirm").hidden = false;
    $("terminal-password").focus();
  });
  $("terminal-confirm").addEventListener("click", () => terminalCommand("reboot", $("terminal-password").value));
  $("period").addEventListener("change", loadHistory);
  $("history-refresh").addEventListener("click", loadHistory);
  $("audio-unlock-btn").addEventListener("click", () => sounder.unlock());
  // any touch of the page lets the browser play sound
  for (const ev of ["pointerdown", "keydown"]) document.addEventListener(ev, () => sounder.unlock(), { capture: true });
  sounder.onchange = () => { if (state.user) $("audio-unlock").hidden = !sounder.blocked; };
  setInterval(tick, 1000);
  setInterval(() => { if (state.user && link.connected) renderSound(); }, 5000);   // a silence runs out
  link.health = setInterval(healthCheck, HEALTH_EVERY_MS);
  try {
    const health = await api("GET", "/api/health");
    setText($("login-ward"), health.ward);
  } catch { /* reconnect() keeps trying */ }
  state.user = { user: "", name: "" };     // not known yet: a session cookie may still be good
  reconnect();
}

main();
