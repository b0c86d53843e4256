// What both consoles (the station's and the pocket console) say about a call: its label, its lamp
// pattern, and where its route stands (who has it, who declined, who was skipped and why).
import { clockTime } from "./dom.js";

export const KIND_ORDER = ["code_blue", "staff_assist", "bathroom", "patient", "technical"];
export const KIND_LABEL = {
  code_blue: "Code blue", staff_assist: "Staff assist", bathroom: "Bathroom", patient: "Patient", technical: "Technical",
};

// Lamp patterns as in firmware/lib/wardproto.py KINDS (dome light): [on ms, off ms]; off 0 = steady
export const PATTERN_OF_KIND = { code_blue: "emergency", staff_assist: "high", bathroom: "high", patient: "normal", technical: "normal" };
export const PATTERN_MS = { normal: [1000, 0], high: [1000, 1000], emergency: [300, 300] };

/** Start a blinking element in phase with the page clock, so all lamps blink together. */
export function syncBlink(el, pattern) {
  const [on, off] = PATTERN_MS[pattern] || PATTERN_MS.normal;
  if (off) el.style.animationDelay = `-${Math.round(performance.now() % (on + off))}ms`;
}

// the steps of a route (docs/HOST.md, routing): as a nurse says them
export const STEP_LABEL = { primary: "primary nurse", secondary: "buddy", charge: "charge nurse", all: "everyone on shift" };

/** A user's display name from a list of staff ({user, name}); the login when unknown. */
export function nameOf(staff, login) {
  const entry = staff && staff.find((s) => s.user === login);
  return entry && entry.name ? entry.name : login;
}

/** The route of a call in words, as parts: {to, step, declined, skipped, next, accepted} (each "" when
 * there is nothing to say). `name` maps a login to a display name; `now` is the host's clock. */
export function routeParts(call, name, now) {
  const r = call.route;
  const parts = { to: "", step: "", declined: "", skipped: "", next: "", accepted: "" };
  if (!r) return parts;
  const step = r.steps && r.steps[r.step];
  parts.step = step ? STEP_LABEL[step] || step : "";
  if (r.accepted_by) parts.accepted = `Accepted by ${name(r.accepted_by)} — coming`;
  const to = (r.to || []).filter((u) => !(r.declined || []).includes(u));
  parts.to = to.length ? `For ${to.map(name).join(", ")}` : "For nobody reachable";
  if (r.declined && r.declined.length) parts.declined = `declined: ${r.declined.map(name).join(", ")}`;
  if (r.skipped && r.skipped.length) {
    // grouped by why: "skipped: Anna Berg, Ben Okafor (logged out); Dora Lind (phone silent)"
    const byWhy = new Map();
    for (const s of r.skipped) byWhy.set(s.why, [...(byWhy.get(s.why) || []), name(s.user)]);
    parts.skipped = `skipped: ${[...byWhy].map(([why, who]) => `${who.join(", ")} (${why})`).join("; ")}`;
  }
  if (r.next_at && !r.accepted_by && call.state === "placed") {
    const nextStep = r.steps && r.steps[r.step + 1];
    const left = Math.max(0, Math.round(r.next_at - now));
    parts.next = `${nextStep ? `to the ${STEP_LABEL[nextStep] || nextStep}` : "passes on"} in ${left} s (${clockTime(r.next_at, true)})`;
  }
  return parts;
}

/** The route in one line: "For Anna Berg (primary nurse) · declined: Ben · skipped: Dora (logged out) · to the charge nurse in 12 s". */
export function routeText(call, name, now) {
  const p = routeParts(call, name, now);
  if (!call.route) return "";
  if (p.accepted) return [p.accepted, p.declined, p.skipped].filter(Boolean).join(" · ");
  return [`${p.to}${p.step ? ` (${p.step})` : ""}`, p.declined, p.skipped, p.next].filter(Boolean).join(" · ");
}

// ---- hospital integration (docs/INTEGRATION.md): the patient on a bed, the Alert Manager's word on a call

/** The integrations' part of a snapshot: patients by "room/bed", PCD-05 status by call id. */
export function takeIntegrations(state, snap) {
  state.patients = new Map(Object.entries(snap.patients || {}));
  state.alertStatus = new Map(Object.entries(snap.alert_status || {}).map(([id, s]) => [Number(id), s]));
}

/** "J.D." — the patient on that bed as the ward shows it, or "". */
export function patientText(state, room, bed) {
  const p = state.patients && state.patients.get(`${room}/${bed}`);
  return p ? p.shown : "";
}

/** "paging: accepted by Nora Nurse" — what the Alert Manager last said of the call, or "". */
export function alertStatusText(state, callId) {
  const s = state.alertStatus && state.alertStatus.get(callId);
  if (!s) return "";
  return `paging: ${s.status}${s.by ? ` by ${s.by}` : ""}`;
}
