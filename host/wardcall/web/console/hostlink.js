// The host's API as both consoles speak it (the station console and the pocket console): the
// request rules the host enforces, the health probe, the reconnect pace and the login form.

/** One request to the host's API. Actions go as JSON with the session's request token
 * (X-Wardcall-Token): the host refuses anything else. Throws an Error with .status. */
export async function callApi(method, path, body, token) {
  const changing = method !== "GET";
  const headers = changing ? { "Content-Type": "application/json" } : {};
  if (changing && token) headers["X-Wardcall-Token"] = token;
  const res = await fetch(path, {
    method, credentials: "same-origin", headers, cache: "no-store",
    body: changing ? JSON.stringify(body === undefined ? {} : body) : undefined,
  });
  let data = null;
  try { data = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) {
    const err = new Error((data && data.error) || `${res.status} ${res.statusText}`);
    err.status = res.status;
    throw err;
  }
  return data;
}

/** Does the host answer /api/health within timeoutMs? (A dead host does not always end a stream.) */
export async function hostAnswers(timeoutMs) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  try {
    const res = await fetch("/api/health", { signal: ctl.signal, cache: "no-store" });
    return res.ok;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/** The wait before the next reconnect attempt: 0.5 s more per attempt, at most 5 s. */
export const retryDelay = (attempts) => Math.min(5000, 500 + attempts * 500);

export const SESSION_GONE = "The host does not know this session any more — please log in again.";

// A page's link to the host is an object {connected, lostSince, attempts, retry} that the page
// shows; these keep it the same way on both consoles.

/** The link is lost: the first loss keeps its time (the banner counts from it). */
export function markLost(link, why, tag) {
  if (link.connected || link.lostSince === null) {
    link.connected = false;
    link.lostSince = Date.now() / 1000;
    link.attempts = 0;
    console.warn(`${tag}: connection lost:`, why);
  }
}

/** The link is up (a snapshot came): true if it had been lost. */
export function markConnected(link) {
  const wasLost = link.lostSince !== null;
  link.connected = true;
  link.lostSince = null;
  link.healthFails = 0;
  link.attempts = 0;
  return wasLost;
}

/** What every event of the stream carries (its sequence number, to resume from, and the host's
 * clock), and the events both consoles keep alike: a call's new state (a cleared call leaves
 * the board), a room, a terminal, a member of staff. True if the event was one of those. */
export function takeEvent(state, name, data) {
  if (typeof data.seq === "number" && !data.ahead) state.seq = data.seq;
  if (typeof data.time === "number") state.offset = data.time - Date.now() / 1000;
  switch (name) {
    case "call":
      if (!newerCall(state, data)) return true;
      if (data.call.state === "cleared") state.calls.delete(data.call.id);
      else state.calls.set(data.call.id, data.call);
      return true;
    case "room": state.rooms.set(data.room.id, data.room); return true;
    case "terminal": state.terminals.set(data.terminal.device, data.terminal); return true;
    case "staff": state.staff.set(data.staff.user, data.staff); return true;
    case "patient":                        // hospital ADT (docs/INTEGRATION.md)
      if (data.patient) state.patients.set(`${data.room}/${data.bed}`, data.patient);
      else state.patients.delete(`${data.room}/${data.bed}`);
      return true;
    case "alert_status": state.alertStatus.set(data.call, data); return true;   // PCD-05 from the Alert Manager
    default: return false;
  }
}

/** A call the host sent ahead of a backlog (`ahead`, no id) comes again later in order, and an
 * older view of it may come in between: take a call's view only if it is newer than the one
 * taken. `state.aheadSeq` (call id → seq of the ahead copy taken) holds only calls whose
 * in-order copy is still to come; a snapshot starts it again. */
function newerCall(state, data) {
  if (!state.aheadSeq) state.aheadSeq = new Map();
  const id = data.call.id;
  const taken = state.aheadSeq.get(id);
  if (data.ahead) {
    if (taken !== undefined && data.seq <= taken) return false;
    state.aheadSeq.set(id, data.seq);
    return true;
  }
  if (taken === undefined) return true;
  if (data.seq < taken) return false;             // older than the view already shown
  state.aheadSeq.delete(id);                      // the ahead copy's own place in order: caught up
  return data.seq > taken;
}

/** reconnect() again after ms (default: the pace of retryDelay). */
export function retryLater(link, reconnect, ms) {
  clearTimeout(link.retry);
  link.retry = setTimeout(reconnect, ms === undefined ? retryDelay(link.attempts) : ms);
}

/** One reconnect attempt: does the host answer, and is the session still good? The user
 * ({user, name, role, may, token}), or null: then a retry is scheduled, or, when the host no
 * longer knows the session (401), sessionGone() is called instead. */
export async function resumeSession(link, api, { showLink, reconnect, sessionGone }) {
  link.attempts += 1;
  showLink();
  try {
    await api("GET", "/api/health");
  } catch {
    if (link.lostSince === null) link.lostSince = Date.now() / 1000;
    showLink();
    retryLater(link, reconnect);
    return null;
  }
  try {
    return await api("GET", "/api/me");
  } catch (err) {
    if (err.status === 401) sessionGone();
    else retryLater(link, reconnect, 1000);
    return null;
  }
}

/** The submit handler of the login form (#login-user, #login-password, #login-error): logs in and
 * hands the user to started(user). A submit is a user's gesture: sound is unlocked by it. */
export function loginHandler({ api, sounder, started, setText, $ }) {
  return async (ev) => {
    ev.preventDefault();
    sounder.unlock();
    setText($("login-error"), "");
    try {
      const user = await api("POST", "/api/login", { user: $("login-user").value, password: $("login-password").value });
      $("login-password").value = "";
      await started(user);
    } catch (err) {
      setText($("login-error"), err.status === 401 ? "Unknown user or wrong password." : `Cannot log in: ${err.message}`);
      $("login-password").select();
    }
  };
}
