// The assignment grid: beds × care staff for one shift — who is each bed's primary nurse (P) and
// buddy (B), and who is the shift's charge nurse. Charge nurses and administrators edit it
// (permission "assign"), one cell, a run of rooms at once, or by copying the last shift; everyone
// else sees it. Every change goes to the host (POST /api/assignment), which records it and tells
// every console (event "assignment").
import { h, fill, setText, clockTime } from "./dom.js";

const ROLE_TEXT = { nurse: "nurse", aide: "aide", charge_nurse: "charge nurse" };
const STEP_OF = { primary: "P", secondary: "B" };
const ROLE_WORD = { primary: "primary", secondary: "buddy" };

export class AssignmentGrid {
  /** api(method, path, body), may(action), toast(text, error), roomName(id), rooms() → [{id, name, beds}] */
  constructor({ api, may, toast, roomName, rooms }) {
    Object.assign(this, { api, may, toast, roomName, rooms });
    this.which = "current";        // the shift shown: "current" | "previous"
    this.assignment = null;
    this.$ = (id) => document.getElementById(id);
    this.$("assign-which").addEventListener("change", () => this.load(this.$("assign-which").value));
    this.$("assign-copy").addEventListener("click", () => this.copy());
    this.$("assign-bulk").addEventListener("submit", (ev) => { ev.preventDefault(); this.bulk(); });
    this.$("assign-charge").addEventListener("change", () => this.send({ charge: this.$("assign-charge").value || null }));
  }

  get editable() { return this.may("assign"); }

  async load(which = this.which) {
    this.which = which;
    setText(this.$("assign-status"), "loading…");
    try {
      this.show(await this.api("GET", `/api/assignment?shift=${encodeURIComponent(which)}`));
      setText(this.$("assign-status"), "");
    } catch (err) {
      setText(this.$("assign-status"), err.status === 404 ? "This host keeps no assignments." : `Cannot load: ${err.message}`);
    }
  }

  /** A change from the host (event "assignment"): shown if it is the shift on screen. */
  changed(assignment) {
    if (!assignment) return;
    const shown = this.assignment;
    if (shown && assignment.shift === shown.shift) this.show(assignment);
    // "this shift" follows the host into a new shift
    else if (this.which === "current" && (!shown || (assignment.starts || 0) > (shown.starts || 0))) this.show(assignment);
  }

  async send(body) {
    if (!this.assignment) return;
    try {
      this.show(await this.api("POST", "/api/assignment", { shift: this.assignment.shift, ...body }));
    } catch (err) {
      this.toast(`Assignment not changed: ${err.message}`, true);
      this.show(this.assignment);
    }
  }

  async copy() {
    try {
      const a = await this.api("POST", "/api/assignment/copy", { from: "previous" });
      this.$("assign-which").value = "current";
      this.which = "current";
      this.show(a);
      this.toast(`Copied the last shift's assignment to ${a.shift}`);
    } catch (err) {
      this.toast(`Cannot copy the last shift: ${err.message}`, true);
    }
  }

  /** "Rooms 101 to 104 as primary for Anna" */
  bulk() {
    const ids = this.rooms().map((r) => r.id);
    let from = ids.indexOf(this.$("bulk-from").value), to = ids.indexOf(this.$("bulk-to").value);
    if (from < 0 || to < 0) return;
    if (from > to) [from, to] = [to, from];
    const role = this.$("bulk-role").value;
    const user = this.$("bulk-user").value || null;
    this.send({ set: [{ rooms: ids.slice(from, to + 1), [role]: user }] });
  }

  cell(bed, person, role) {
    const key = `${bed.room}/${bed.bed}`;
    const on = bed[role] === person.user;
    const label = `${person.name}: ${ROLE_WORD[role]} for ${this.roomName(bed.room)} bed ${bed.bed}`;
    return h("button", {
      type: "button", className: `cell cell-${role}`, "aria-pressed": String(on), "aria-label": label, title: label,
      disabled: !this.editable, dataset: { bed: key, user: person.user, role },
      onclick: () => this.send({ set: [{ beds: [key], [role]: on ? null : person.user }] }),
    }, STEP_OF[role]);
  }

  show(a) {
    this.assignment = a;
    if (!a) return;
    const staff = a.staff || [];
    setText(this.$("assign-shift"), `${a.name || ""} ${a.shift}${a.starts ? ` · ${clockTime(a.starts)}–${clockTime(a.ends)}` : ""}`);
    const unassigned = a.unassigned || [];
    this.$("assign-unassigned").hidden = unassigned.length === 0;
    setText(this.$("assign-unassigned"), unassigned.length
      ? `⚠ No nurse assigned: ${unassigned.map((k) => { const [room, bed] = k.split("/"); return `${this.roomName(room)} bed ${bed}`; }).join(", ")}`
      : "");
    for (const id of ["assign-bulk", "assign-copy"]) this.$(id).hidden = !this.editable;
    this.$("assign-charge").disabled = !this.editable;

    const options = (blank) => [h("option", { value: "" }, blank), ...staff.map((s) => h("option", { value: s.user }, s.name))];
    fill(this.$("assign-charge"), options("— nobody —"));
    this.$("assign-charge").value = a.charge || "";
    const keep = this.$("bulk-user").value;
    fill(this.$("bulk-user"), options("nobody"));
    this.$("bulk-user").value = staff.some((s) => s.user === keep) ? keep : (staff[0] ? staff[0].user : "");
    const rooms = this.rooms();
    for (const [id, pick] of [["bulk-from", 0], ["bulk-to", rooms.length - 1]]) {
      const sel = this.$(id), kept = sel.value;
      fill(sel, rooms.map((r) => h("option", { value: r.id }, r.name || r.id)));
      sel.value = rooms.some((r) => r.id === kept) ? kept : (rooms[pick] ? rooms[pick].id : "");
    }

    const beds = a.beds || [];
    fill(this.$("assign-grid"),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Bed"),
        staff.map((s) => h("th", { scope: "col", dataset: { user: s.user } },
          h("span", { className: "who" }, s.name),
          h("span", { className: "role" }, s.user === a.charge ? "charge of the shift" : ROLE_TEXT[s.role] || s.role))))),
      h("tbody", {}, beds.map((b) => h("tr", { dataset: { bed: `${b.room}/${b.bed}`, unassigned: String(!b.primary) } },
        h("th", { scope: "row" }, `${this.roomName(b.room)} · Bed ${b.bed}`),
        staff.map((s) => h("td", { dataset: { user: s.user } }, this.cell(b, s, "primary"), this.cell(b, s, "secondary")))))),
      h("tfoot", {}, h("tr", {},
        h("th", { scope: "row" }, "Primary for"),
        staff.map((s) => h("td", { dataset: { user: s.user } }, `${beds.filter((b) => b.primary === s.user).length} beds`)))));
  }
}
