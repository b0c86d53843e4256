// The wardcall pocket console: one nurse's phone. "My calls" (routed to me now) first, then the
// rest of the ward; Accept and Decline on mine; sound and vibration while one of mine waits; the
// screen kept on while on duty; a banner when the link drops, and a reconnect that resumes where
// it left off (Last-Event-ID). A client of the host's API (docs/HOST.md, docs/POCKET.md).
import { h, fill, setText, elapsed, clockTime, toaster } from "/console/dom.js";
import { Sounder, LEVELS } from "/console/sound.js";
import { KIND_LABEL, PATTERN_OF_KIND, STEP_LABEL, syncBlink, routeParts, routeText, nameOf, takeIntegrations, patientText, alertStatusText } from "/console/calls.js";
import { openStream } from "./stream.js";
import { callApi, hostAnswers, loginHandler, markConnected, markLost, resumeSession, retryLater, SESSION_GONE, takeEvent } from "/console/hostlink.js";

const $ = (id) => document.getElementById(id);

const HEALTH_EVERY_MS = 3000;
const HEALTH_TIMEOUT_MS = 2500;
const HEARTBEAT_EVERY_MS = 15000;       // the contract: every 15 s while the page is open
const QUIET_STREAM_MS = 40000;          // the host sends a keepalive every 15 s: silence this long is a dead link
// navigator.vibrate patterns (ms on, off, on …) by alarm priority, once per sound burst
const VIBRATE = { high: [180, 90, 180, 90, 180, 300, 180, 90, 180], medium: [300, 150, 300, 150, 300], low: [500] };

const state = {
  ward: "", seq: 0, offset: 0,          // offset: host clock − this phone's clock (s)
  calls: new Map(), rooms: new Map(), staff: new Map(), terminals: new Map(),
  layout: null, assignment: null, user: null, phoneSilentS: null,
  patients: new Map(), alertStatus: new Map(),   // hospital integration (docs/INTEGRATION.md), if the host has it
};
const link = {
  stream: null, lastId: null, connected: false, lostSince: null, attempts: 0, retry: null, healthFails: 0,
  snapshots: 0, resumes: 0, heartbeats: 0, heartbeatError: null, beat: null,
};
const wake = { sentinel: null, state: "off", acquired: 0 };   // state: off | on | unsupported | refused
const sounder = new Sounder();
const buzz = { count: 0, last: null, supported: typeof navigator.vibrate === "function" };
window.pocket = { state, link, wake, sounder, buzz };           // for the curious (and the tests)

const now = () => Date.now() / 1000 + state.offset;
const me = () => (state.user && state.user.user) || "";
const loggedIn = () => !!me();
const name = (login) => (login === me() ? "you" : nameOf([...state.staff.values()], login));

// ---------------------------------------------------------------- the host's API

/** The host's API with this session's request token. */
const api = (method, path, body) => callApi(method, path, body, state.user && state.user.token);

// ---------------------------------------------------------------- the link

function connect() {
  clearTimeout(link.retry);
  if (link.stream) link.stream.close();
  const stream = openStream("/api/events", link.lastId, (event, data, id) => {
    if (stream !== link.stream) return;
    link.lastId = id;
    if (event === "snapshot") onSnapshot(data);
    else if (event === "resumed") onResumed(data);
    else onChange(event, data);
  }, (end) => {
    if (stream !== link.stream) return;
    link.stream = null;
    if (end.status === 401) showLogin(SESSION_GONE);
    else lost(end.why);
  });
  link.stream = stream;
}

function lost(why) {
  if (link.stream) { link.stream.close(); link.stream = null; }
  markLost(link, why, "wardcall pocket");
  render();
  retryLater(link, reconnect);
}

async function reconnect() {
  const user = await resumeSession(link, api, {
    showLink, reconnect, sessionGone: () => showLogin(loggedIn() ? SESSION_GONE : ""),
  });
  if (!user) return;
  if (!loggedIn()) await started(user);
  else { state.user = user; connect(); heartbeat(); }
}

/** A dead link does not always end the stream (a phone between access points): ask the host. */
async function healthCheck() {
  if (!link.connected) return;
  if (link.stream && Date.now() - link.stream.heard > QUIET_STREAM_MS) { lost("the event stream went quiet"); return; }
  if (await hostAnswers(HEALTH_TIMEOUT_MS)) link.healthFails = 0;
  else if (++link.healthFails >= 2) lost("the host does not answer");
}

/** "This phone is open and listening": without it the host skips me ("phone silent"). Sent at
 * login, whenever the page comes back on screen, and 15 s after the one before. */
async function heartbeat() {
  clearTimeout(link.beat);
  if (!loggedIn()) return;
  link.beat = setTimeout(heartbeat, HEARTBEAT_EVERY_MS);
  try {
    const answer = await api("POST", "/api/pocket/heartbeat", {});
    link.heartbeats += 1;
    link.heartbeatError = null;
    if (answer && typeof answer.phone_silent_s === "number") state.phoneSilentS = answer.phone_silent_s;
  } catch (err) {
    link.heartbeatError = err.message;
    if (err.status === 401) showLogin("Please log in again.");
  }
  renderDuty();
}

function onSnapshot(snap) {
  state.seq = snap.seq;
  state.aheadSeq = new Map();            // calls sent ahead of a backlog (hostlink.js)
  state.ward = snap.ward;
  state.offset = snap.time - Date.now() / 1000;
  state.calls = new Map((snap.calls || []).map((c) => [c.id, c]));
  state.rooms = new Map((snap.rooms || []).map((r) => [r.id, r]));
  state.terminals = new Map((snap.terminals || []).map((t) => [t.device, t]));
  state.staff = new Map((snap.staff || []).map((s) => [s.user, s]));
  if (snap.assignment) state.assignment = snap.assignment;
  takeIntegrations(state, snap);
  link.snapshots += 1;
  linkUp();
}

function onResumed() {
  link.resumes += 1;            // the host replays what this phone missed: no snapshot needed
  linkUp();
}

function linkUp() {
  const wasLost = markConnected(link);
  if (wasLost) toast("Connected again — calls are up to date.");
  render();
}

function onChange(event, data) {
  if (!takeEvent(state, event, data)) {        // calls, rooms, terminals, staff: taken
    if (event !== "assignment") return;         // alarms, updates, the station's sound: not this phone's business
    state.assignment = data.assignment;
  }
  render();
}

// ---------------------------------------------------------------- whose call

/** Routed to me now (and not declined by me), or taken by me. A call someone else accepted, or
 * whose route ended at the bedside, is the rest of the ward's. */
function isMine(call) {
  const r = call.route;
  if (!r || !me()) return false;
  const taker = r.accepted_by || call.acknowledged_by;
  if (taker) return taker === me();
  if (r.ended) return false;
  return (r.to || []).includes(me()) && !(r.declined || []).includes(me());
}

/** Mine, and waiting for an answer: Accept and Decline are offered, and the phone rings. */
function waitsForMe(call) {
  return isMine(call) && call.state === "placed" && !call.route.accepted_by;
}

function sortedCalls() {
  return [...state.calls.values()].sort((a, b) => a.priority - b.priority || a.placed_at - b.placed_at || a.id - b.id);
}

function roomName(id) {
  const room = state.rooms.get(id) || (state.layout && state.layout.rooms.find((r) => r.id === id));
  return room && room.name ? room.name : `Room ${id}`;
}

/** Where my call stands, in my words. */
function myStatus(call) {
  const r = call.route;
  if (call.state === "attended") return `Staff in the room${call.attended_by ? ` (${name(call.attended_by)})` : ""}`;
  if (r.accepted_by === me() || call.acknowledged_by === me()) return "You accepted — you are coming";
  if (r.accepted_by || call.state === "acknowledged") return `${name(r.accepted_by || call.acknowledged_by)} is coming`;
  const p = routeParts(call, name, now());
  const step = r.steps && r.steps[r.step];
  const who = step === "all" ? "For everyone on shift" : step ? `For you — ${STEP_LABEL[step] || step}` : "For you";
  const others = (r.to || []).filter((u) => u !== me() && !(r.declined || []).includes(u));
  return [who, others.length ? `also ${others.map(name).join(", ")}` : "", p.declined, p.skipped, p.next].filter(Boolean).join(" · ");
}

function otherStatus(call) {
  if (call.state === "attended") return `Staff in the room${call.attended_by ? ` (${name(call.attended_by)})` : ""}`;
  if (call.state === "acknowledged") return `${name((call.route && call.route.accepted_by) || call.acknowledged_by) || "Someone"} is coming`;
  if (call.route && (call.route.declined || []).includes(me())) return `You declined · ${routeText(call, name, now())}`;
  return call.route ? routeText(call, name, now()) : "Waiting";
}

// ---------------------------------------------------------------- rendering

function callCard(call) {
  const el = h("li", { className: "call", dataset: { id: call.id } },
    h("div", { className: "lamp", "aria-hidden": "true" }),
    h("div", { className: "what" },
      h("div", { className: "kind" }),
      h("div", { className: "where" }),
      h("div", { className: "status" })),
    h("div", { className: "age", title: "time since the call was placed" }),
    h("div", { className: "actions" },
      h("button", { type: "button", className: "btn btn-accept", onclick: () => answer(call.id, "accept", el) }, "Accept"),
      h("button", { type: "button", className: "btn btn-decline", onclick: () => answer(call.id, "decline", el) }, "Decline / busy")));
  return el;
}

function updateCard(el, call, mine) {
  const pattern = PATTERN_OF_KIND[call.kind_name] || "normal";
  const changed = el.dataset.pattern !== pattern || el.dataset.state !== call.state;
  Object.assign(el.dataset, { kind: call.kind_name, state: call.state, priority: call.alarm_priority, pattern,
    device: call.device, room: call.room, bed: call.bed, mine: String(mine) });
  if (changed) for (const target of [el, el.querySelector(".lamp")]) syncBlink(target, pattern);
  setText(el.querySelector(".kind"), KIND_LABEL[call.kind_name] || call.kind_name);
  const patient = patientText(state, call.room, call.bed);
  setText(el.querySelector(".where"), `${roomName(call.room)} · Bed ${call.bed}${patient ? ` · ${patient}` : ""}`);
  const paging = alertStatusText(state, call.id);
  const status = (mine ? myStatus(call) : otherStatus(call)) + (paging ? ` · ${paging}` : "");
  setText(el.querySelector(".status"), status);
  el.querySelector(".actions").hidden = !(mine && waitsForMe(call));
  el.setAttribute("aria-label", `${KIND_LABEL[call.kind_name] || call.kind_name} call, ${roomName(call.room)} bed ${call.bed}, ${status}`);
}

function renderList(list, calls, mine) {
  const existing = new Map([...list.children].map((el) => [Number(el.dataset.id), el]));
  calls.forEach((call, i) => {
    let el = existing.get(call.id);
    if (!el) el = callCard(call);
    existing.delete(call.id);
    updateCard(el, call, mine);
    if (list.children[i] !== el) list.insertBefore(el, list.children[i] || null);
  });
  for (const el of existing.values()) el.remove();
}

function renderCalls() {
  const calls = sortedCalls();
  const mine = calls.filter(isMine), others = calls.filter((c) => !isMine(c));
  renderList($("mine"), mine, true);
  renderList($("others"), others, false);
  $("no-mine").hidden = mine.length > 0;
  $("no-others").hidden = others.length > 0;
  setText($("mine-count"), mine.length ? `(${mine.length})` : "");
  setText($("others-count"), others.length ? `(${others.length})` : "");
  const waiting = mine.filter(waitsForMe).length;
  document.title = `${waiting ? `(${waiting}) ` : ""}wardcall pocket${state.ward ? ` — ${state.ward}` : ""}`;
  tick();
}

/** Beds as a nurse says them: a whole room by its number ("101"), else room-bed ("102-1"). */
function bedList(beds, all) {
  const out = [];
  for (const room of [...new Set(beds.map((b) => b.room))]) {
    const mine = beds.filter((b) => b.room === room);
    if (mine.length === all.filter((b) => b.room === room).length) out.push(room);
    else out.push(...mine.map((b) => `${b.room}-${b.bed}`));
  }
  return out.join(", ");
}

function myBeds() {
  const a = state.assignment;
  if (!a || !a.beds) return "";
  const primary = a.beds.filter((b) => b.primary === me());
  const buddy = a.beds.filter((b) => b.secondary === me());
  return [primary.length ? `yours: ${bedList(primary, a.beds)}` : "", buddy.length ? `buddy: ${bedList(buddy, a.beds)}` : "",
    a.charge === me() ? "charge nurse" : ""].filter(Boolean).join(" · ");
}

/** On duty: what this phone does for me now — on shift and reachable, the screen kept on. */
function renderDuty() {
  if (!loggedIn()) { setText($("duty"), ""); return; }
  const mine = state.staff.get(me());
  let reach;
  if (!mine) reach = "not in the ward's care staff";
  else if (!mine.on_shift) reach = "not on shift: calls are not routed to you";
  else if (mine.reachable) reach = "calls for you ring here";
  else reach = `not reachable (${mine.why_not || "?"}): calls skip you`;
  const screen = { on: "screen stays on", off: "screen may sleep", unsupported: "keep the screen on yourself", refused: "screen may sleep" }[wake.state];
  setText($("duty"), [reach, screen, myBeds()].filter(Boolean).join(" · "));
  document.body.dataset.reachable = String(!!(mine && mine.on_shift && mine.reachable));
  document.body.dataset.wake = wake.state;
  const where = mine && mine.room ? `in ${roomName(mine.room)}` : "";
  setText($("user-where"), where);
}

function showLink() {
  const isLost = link.lostSince !== null && state.user !== null;     // also before the session is known
  $("lost").hidden = !isLost;
  document.body.dataset.connection = link.connected ? "live" : isLost ? "lost" : loggedIn() ? "starting" : "login";
  if (isLost) setText($("lost-detail"), `since ${clockTime(link.lostSince, true)} — reconnecting${link.attempts ? ` (attempt ${link.attempts})` : ""}…`);
}

function render() {
  setText($("ward-name"), state.ward || "wardcall");
  showLink();
  renderCalls();
  renderDuty();
  renderSound();
}

// ---------------------------------------------------------------- sound, vibration, the screen

function wantedSound() {
  if (!loggedIn()) return null;
  // nothing is known while the link is down: a low tone says so
  if (!link.connected) return link.lostSince !== null ? "low" : null;
  const levels = [...state.calls.values()].filter(waitsForMe).map((c) => c.alarm_priority);
  return LEVELS.filter((l) => levels.includes(l)).pop() || null;
}

function renderSound() {
  const level = wantedSound();
  sounder.set(level);
  document.body.dataset.sound = level || "off";
  $("audio-unlock").hidden = !(loggedIn() && sounder.blocked);
}

function vibrate(level) {
  buzz.count += 1;
  buzz.last = level;
  if (buzz.supported) navigator.vibrate(VIBRATE[level] || VIBRATE.low);
}

async function holdWakeLock() {
  if (!loggedIn() || document.visibilityState !== "visible") return;
  if (wake.sentinel && !wake.sentinel.released) return;
  if (!("wakeLock" in navigator)) { wake.state = "unsupported"; renderDuty(); return; }
  try {
    const sentinel = await navigator.wakeLock.request("screen");
    wake.sentinel = sentinel;
    wake.state = "on";
    wake.acquired += 1;
    // the browser lets go when the page is hidden; visibilitychange takes it again
    sentinel.addEventListener("release", () => { if (wake.sentinel === sentinel) { wake.state = "off"; renderDuty(); } });
  } catch (err) {
    wake.state = "refused";
    console.warn("wardcall pocket: no wake lock:", err.message);
  }
  renderDuty();
}

function letScreenSleep() {
  const sentinel = wake.sentinel;
  wake.sentinel = null;
  wake.state = "off";
  if (sentinel && !sentinel.released) sentinel.release().catch(() => {});
}

// ---------------------------------------------------------------- actions

async function answer(id, how, el) {
  const buttons = el.querySelectorAll(".actions .btn");
  for (const b of buttons) b.disabled = true;
  const call = state.calls.get(id);
  const where = call ? `${roomName(call.room)} bed ${call.bed}` : "the call";
  try {
    const reply = await api("POST", `/api/calls/${id}/${how}`, how === "decline" ? { reason: "busy" } : {});
    if (reply && reply.call) {
      if (reply.call.state === "cleared") state.calls.delete(reply.call.id);
      else state.calls.set(reply.call.id, reply.call);
    }
    toast(how === "accept" ? `Accepted: ${where} — on your way` : `Declined: ${where} passed on`);
    render();
  } catch (err) {
    if (err.status === 401) showLogin("Please log in again.");
    else toast(`Could not ${how}: ${err.message}`, true);
  } finally {
    for (const b of buttons) b.disabled = false;
  }
}

/** Once a second: ages, the clock and "passes on in …", nothing else. */
function tick() {
  const t = now();
  for (const list of [$("mine"), $("others")]) {
    for (const el of list.children) {
      const call = state.calls.get(Number(el.dataset.id));
      if (!call) continue;
      setText(el.querySelector(".age"), elapsed(t - call.placed_at));
      if (call.route && call.route.next_at) setText(el.querySelector(".status"), el.dataset.mine === "true" ? myStatus(call) : otherStatus(call));
    }
  }
  setText($("clock"), clockTime(t));
}

const toast = toaster($("toast"), 5000);

// ---------------------------------------------------------------- login

function showLogin(message = "") {
  state.user = null;
  if (link.stream) { link.stream.close(); link.stream = null; }
  clearTimeout(link.retry);
  clearTimeout(link.beat);
  link.connected = false;
  link.lostSince = null;
  link.lastId = null;
  letScreenSleep();
  sounder.set(null);
  showLink();
  setText($("login-error"), message);
  $("login-screen").hidden = false;
  $("login-user").focus();
}

async function started(user) {
  state.user = user;
  link.attempts = 0;
  setText($("user-name"), user.name || user.user);
  $("login-screen").hidden = true;
  sounder.unlock();
  try { state.layout = await api("GET", "/api/layout"); } catch { state.layout = null; }
  try { state.assignment = await api("GET", "/api/assignment"); } catch { state.assignment = null; }
  connect();
  heartbeat();
  holdWakeLock();
  render();
}


async function logout() {
  try { await api("POST", "/api/logout"); } catch { /* already gone */ }
  showLogin("Logged out.");
}

// ---------------------------------------------------------------- start

async function main() {
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/pocket/sw.js", { scope: "/pocket/" })
      .catch((err) => console.warn("wardcall pocket: no service worker:", err.message));
  }
  $("login").addEventListener("submit", loginHandler({ api, sounder, started, setText, $ }));
  $("logout").addEventListener("click", logout);
  $("audio-unlock-btn").addEventListener("click", () => sounder.unlock());
  for (const ev of ["pointerdown", "keydown"]) document.addEventListener(ev, () => sounder.unlock(), { capture: true });
  sounder.onchange = () => { if (loggedIn()) $("audio-unlock").hidden = !sounder.blocked; };
  sounder.onburst = vibrate;
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible") return;
    // back on screen (unlocked, or the app brought to the front): the screen lock and the link first
    holdWakeLock();
    heartbeat();
    healthCheck();
  });
  setInterval(tick, 1000);
  setInterval(healthCheck, HEALTH_EVERY_MS);
  try {
    const health = await api("GET", "/api/health");
    setText($("login-ward"), health.ward);
  } catch { /* reconnect() keeps trying */ }
  state.user = { user: "", name: "" };    // not known yet: a session cookie may still be good
  reconnect();
}

main();
