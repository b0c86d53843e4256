// The hospital consoles' link: log in, follow /api/events (a snapshot, then changes), keep the
// wards' calls, terminals and alarms; a lost link shows the banner and reconnects.
export const state = { hospital: "", hub: { connected: false }, wards: new Map(), report: [], me: null, consoleAlarms: [] };

const $ = (id) => document.getElementById(id);
export { $ };

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  return node;
}

export function age(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${Math.floor(s / 3600)} h ${Math.floor(s % 3600 / 60)} min`;
}

export function kindName(call) { return call.kind_name.replace("_", " "); }

function takeSnapshot(snap) {
  state.hospital = snap.hospital;
  state.hub = snap.hub;
  state.consoleAlarms = snap.console_alarms || [];
  state.report = snap.report;
  state.wards = new Map();
  for (const w of snap.wards) {
    state.wards.set(w.id, { id: w.id, name: w.name, lost: w.lost, last_event: w.last_event,
      calls: new Map(w.calls.map((c) => [c.id, c])), terminals: new Map(w.terminals.map((t) => [t.device, t])),
      alarms: new Map(w.alarms.map((a) => [a.id, a])) });
  }
}

function takeChange(name, p) {
  const ward = state.wards.get(p.ward);
  if (name === "hub") { state.hub.connected = p.connected; return; }
  if (!ward) return;
  if (name === "call") {
    ward.last_event = Date.now() / 1000;
    if (p.call.state === "cleared") ward.calls.delete(p.call.id); else ward.calls.set(p.call.id, p.call);
  } else if (name === "terminal") ward.terminals.set(p.terminal.device, p.terminal);
  else if (name === "alarm") { if (p.active) ward.alarms.set(p.alarm.id, p.alarm); else ward.alarms.delete(p.alarm.id); }
  else if (name === "ward") ward.lost = p.lost;
}

export async function post(url, body) {
  const reply = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body ?? {}) });
  let data = {};
  try { data = await reply.json(); } catch { /* no body */ }
  if (!reply.ok) throw new Error(data.error || `${reply.status}`);
  return data;
}

// every ward's open calls that pass the filter, code blue first, then the oldest
export function openCalls(filter = () => true) {
  const out = [];
  for (const w of state.wards.values()) for (const c of w.calls.values()) {
    if (filter(c, w)) out.push({ ...c, ward: w.id, ward_name: w.name });
  }
  return out.sort((a, b) => a.kind - b.kind || a.placed_at - b.placed_at || a.id - b.id);
}

export function emergencies(filter = () => true) {
  return openCalls((c, w) => (c.kind_name === "code_blue" || c.kind_name === "staff_assist") && filter(c, w));
}

export function start(render) {
  let source = null;
  const linkLost = (lost) => { document.body.dataset.connection = lost ? "lost" : "ok"; $("lost").hidden = !lost; };
  const showLogin = () => { $("login").hidden = false; $("main").hidden = true; $("logout").hidden = true; };
  const connect = () => {
    source = new EventSource("/api/events");
    source.addEventListener("state", (e) => { takeSnapshot(JSON.parse(e.data)); linkLost(!state.hub.connected); render(); });
    for (const name of ["call", "terminal", "alarm", "ward", "hub"]) {
      source.addEventListener(name, (e) => { takeChange(name, JSON.parse(e.data)); linkLost(!state.hub.connected); render(name); });
    }
    source.onerror = async () => {
      linkLost(true);
      const me = await fetch("/api/me").catch(() => null);
      if (me && me.status === 401) { source.close(); showLogin(); }
    };
  };
  const loggedIn = (me) => {
    state.me = me;
    $("user-name").textContent = me.name;
    $("login").hidden = true; $("main").hidden = false; $("logout").hidden = false;
    connect();
  };
  $("login").addEventListener("submit", async (e) => {
    e.preventDefault();
    try { loggedIn(await post("/api/login", { user: $("login-user").value, password: $("login-password").value })); }
    catch (err) { $("login-error").textContent = err.message; }
  });
  $("logout").addEventListener("click", async () => { await post("/api/logout"); if (source) source.close(); showLogin(); });
  setInterval(() => { $("clock").textContent = new Date().toLocaleTimeString(); render("tick"); }, 1000);
  fetch("/api/me").then(async (r) => (r.ok ? loggedIn(await r.json()) : showLogin()));
}
