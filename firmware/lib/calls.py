# The call state machine and the cancel rules (docs/SESSION.md, "Presence and cancel").
# One slot per source of a call; a slot holds at most one open call:
# [call id, state, boot, ticks, unix s or 0] - when it was placed, as an outbox event has it, so
# the CALL re-announced after every WELCOME carries a best-effort age_ms (docs/SESSION.md, Calls).
# Placing a call lights the lamps first, then writes the outbox (flash), then wakes the link.
# Messages that are not calls (PRESENCE, FAULT) go through the Outgoing shared with the link.
from micropython import const
import time
from wardproto import (CODE_BLUE, STAFF_ASSIST, BATHROOM, PATIENT, TECHNICAL, KINDS, CALL, CANCEL,
                       PRESENCE as M_PRESENCE, FAULT, FAULT_CORD, FAULT_DEVICE, CANCEL_PRESENCE,
                       CANCEL_ORIGIN, ST_PLACED, ST_ACKNOWLEDGED, ST_ATTENDED, ST_CLEARED, STATE_NAMES)

import inputs as I
import lamps as L
from flash import read_json, write_json, next_boot
from log import log
from outbox import F_TYPE, F_CALL, F_ARG, F_SLOT, F_BOOT, F_TICKS, F_UNIX

PATH = "calls.json"

# slots, most urgent first (the order decides which call the lamps and buzzer show)
S_CODE = const(0)
S_ASSIST = const(1)
S_BATH = const(2)
S_PATIENT = const(3)
S_CORD = const(4)      # technical: cord unplugged or loop broken
S_DEVICE = const(5)    # technical: the terminal's own fault
_SLOTS = const(6)
SLOT_KIND = (CODE_BLUE, STAFF_ASSIST, BATHROOM, PATIENT, TECHNICAL, TECHNICAL)
SLOT_NAMES = ("code_blue", "staff_assist", "bathroom", "patient", "cord_fault", "device_fault")
# an open call: [call id, state, boot, ticks, unix]
A_CALL = const(0)
A_STATE = const(1)
_A_BOOT = const(2)
_A_TICKS = const(3)
_A_UNIX = const(4)
# slots a presence press clears (bathroom and cord only when the cord is back at rest)
PRESENCE_CLEARS = (S_ASSIST, S_PATIENT, S_DEVICE)
_OFFLINE_ALARM_MS = const(3000)  # offline this long with a call waiting: the buzzer sounds


class Calls:
    def __init__(self, boot, outbox, lamps, buzzer, clock, out, path=PATH):
        self.boot = boot
        self.outbox = outbox
        self.lamps = lamps
        self.buzzer = buzzer
        self.clock = clock
        self.out = out              # outgoing.Outgoing: messages for the host, the link's wake-up
        self.path = path
        self.active = [None] * _SLOTS
        self.presence = False
        self.staff = ""             # the badge that turned presence on ("" for the button)
        self.cord_pulled = False
        self.cord_fault = False
        self.device_fault = False
        self.configured = True
        self.online = False
        self._offline_since = time.ticks_ms()
        self._n = 0
        self._code_armed = False
        self._load()

    # --- persistence ---
    def _load(self):
        st = read_json(self.path, {})
        if not isinstance(st, dict):
            st = {}
        self.presence = st.get("p") is True
        staff = st.get("s")
        self.staff = staff if self.presence and isinstance(staff, str) else ""
        if self.presence:
            log("calls", "presence restored on%s" % ((" (badge %s)" % self.staff) if self.staff else ""))
        for c in st.get("c", ()):
            # [slot] + an open call; [slot, call, state] from an older firmware
            if isinstance(c, list) and (len(c) == 6 or len(c) == 3) and 0 <= c[0] < _SLOTS:
                if len(c) == 6:
                    self.active[c[0]] = c[1:]
                else:
                    self.active[c[0]] = c[1:] + [0, 0, 0]   # placed at an unknown time
        # reconcile with the outbox (a power cut between the two writes)
        for ev in self.outbox.items:
            slot = ev[F_SLOT]
            if not 0 <= slot < _SLOTS:
                continue
            cur = self.active[slot]
            if ev[F_TYPE] == CALL and cur is None and not self._cancel_pending(ev[F_CALL]):
                self.active[slot] = [ev[F_CALL], ST_PLACED, ev[F_BOOT], ev[F_TICKS], ev[F_UNIX]]
            elif ev[F_TYPE] == CANCEL and cur is not None and cur[A_CALL] == ev[F_CALL]:
                self.active[slot] = None
        for s in range(_SLOTS):
            if self.active[s] is not None:
                log("calls", "restored open %s call %d" % (SLOT_NAMES[s], self.active[s][A_CALL]))

    def _cancel_pending(self, call):
        for ev in self.outbox.items:
            if ev[F_TYPE] == CANCEL and ev[F_CALL] == call:
                return True
        return False

    def _save(self):
        c = []
        for s in range(_SLOTS):
            a = self.active[s]
            if a is not None:
                c.append([s] + a)
        try:
            write_json(self.path, {"p": self.presence, "s": self.staff, "c": c})
        except OSError as e:
            log("calls", "flash write failed: %r" % (e,))

    # --- placing and cancelling ---
    def _new_id(self):
        self._n += 1
        if self._n > 0xFFFF:
            self.boot = next_boot()
            self._n = 1
        return ((self.boot & 0xFFFF) << 16) | self._n

    def place(self, slot):
        if self.active[slot] is not None:
            return None             # already calling: the lamp already shows it
        call = self._new_id()
        unix = self.clock.unix()
        self.active[slot] = [call, ST_PLACED, self.outbox.boot, time.ticks_ms(), unix]
        self.refresh()              # the lamp lights now, before flash or network
        kind = SLOT_KIND[slot]
        log("calls", "%s call %d placed" % (SLOT_NAMES[slot], call))
        self.outbox.add(CALL, call, kind, slot, unix)
        self._save()
        self.out.wake()
        return call

    def cancel(self, slot, reason):
        a = self.active[slot]
        if a is None:
            return None
        self.active[slot] = None
        self.refresh()
        log("calls", "%s call %d cancelled (reason %d)" % (SLOT_NAMES[slot], a[A_CALL], reason))
        self.outbox.add(CANCEL, a[A_CALL], reason, slot, self.clock.unix())
        self._save()
        self.out.wake()
        return a[A_CALL]

    def fault(self, code, active, detail):
        """FAULT to the host; raised while the link is down, it is sent after the next WELCOME."""
        self.out.send(FAULT, {"code": code, "active": 1 if active else 0, "detail": detail})

    def device_problem(self, detail):
        """The terminal's own fault (flash, memory, a task restarted): a technical call."""
        log("calls", "device fault: %s" % detail)
        if not self.device_fault:
            self.device_fault = True
            self.fault(FAULT_DEVICE, 1, detail)
        self.place(S_DEVICE)

    # --- inputs ---
    def on_input(self, ev, i):
        if ev == I.PRESS:
            if i == I.CALL:
                self.place(S_ASSIST if self.presence else S_PATIENT)
            elif i == I.ASSIST:
                self.place(S_ASSIST)
            elif i == I.CODE:
                if self.active[S_CODE] is not None:
                    self._code_armed = True     # holding it for 2 s now clears it
                else:
                    self._code_armed = False
                    self.place(S_CODE)
            elif i == I.PRESENCE:
                self.presence_toggled("")
            elif i == I.CORD_PULL:
                self.cord_pulled = True
                self.place(S_BATH)
            elif i == I.CORD_LOOP:
                if self.cord_fault:
                    self.cord_fault = False
                    log("calls", "cord plugged in again")
                    self.fault(FAULT_CORD, 0, "cord plugged in")
                    self.refresh()
        elif ev == I.RELEASE:
            if i == I.CODE:
                self._code_armed = False
            elif i == I.CORD_PULL:
                self.cord_pulled = False
                log("calls", "cord back at rest")
            elif i == I.CORD_LOOP:
                self.cord_fault = True
                log("calls", "cord unplugged or its loop broken")
                self.place(S_CORD)
                self.fault(FAULT_CORD, 1, "cord unplugged or loop broken")
        elif ev == I.HOLD and i == I.CODE and self._code_armed:
            self._code_armed = False
            self.cancel(S_CODE, CANCEL_ORIGIN)

    def presence_toggled(self, staff):
        """The presence button (staff "") or a badge (staff = its UID in hex) at this terminal:
        presence toggles, PRESENCE names who did it, and the calls presence clears are cleared."""
        self.presence = not self.presence
        self.staff = staff if self.presence else ""
        log("calls", "presence %s%s" % ("on" if self.presence else "off", (" (badge %s)" % staff) if staff else ""))
        self.out.send(M_PRESENCE, {"on": 1 if self.presence else 0, "staff": staff})
        for s in PRESENCE_CLEARS:
            self.cancel(s, CANCEL_PRESENCE)
        if self.device_fault:
            self.device_fault = False
            self.fault(FAULT_DEVICE, 0, "cleared at the terminal")
        if not self.cord_pulled and not self.cord_fault:
            self.cancel(S_BATH, CANCEL_ORIGIN)
            self.cancel(S_CORD, CANCEL_ORIGIN)
        self._save()
        self.refresh()

    # --- the host ---
    def reannounce(self):
        """After every WELCOME: CALL events (RAM only, same id, kind and placement time) for the
        calls open here whose CALL is no longer waiting in the outbox - the host acknowledged it
        once, but may have lost its record since. Most urgent first; the link sends them before
        the outbox's stored events, so a CANCEL never goes before its CALL."""
        again = []
        for s in range(_SLOTS):
            a = self.active[s]
            if a is not None and not self.outbox.waiting(CALL, a[A_CALL]):
                again.append([CALL, a[A_CALL], SLOT_KIND[s], s, a[_A_BOOT], a[_A_TICKS], a[_A_UNIX], None])
                log("calls", "%s call %d still open: announced again" % (SLOT_NAMES[s], a[A_CALL]))
        return again

    def on_state(self, call, state, by):
        """CALL_STATE from the host. Every state but CLEARED is taken as it comes, PLACED too: the
        host sends PLACED for a call it takes as new (after losing its record), and the lamp
        must then show the call's pattern again, not "acknowledged"."""
        for s in range(_SLOTS):
            a = self.active[s]
            if a is not None and a[A_CALL] == call:
                if state == ST_CLEARED:
                    log("calls", "host reports call %d cleared but it is open here: kept" % call)
                    return
                if a[A_STATE] != state:
                    a[A_STATE] = state
                    log("calls", "call %d %s%s" % (call, STATE_NAMES[state], (" by " + by) if by else ""))
                    self._save()
                    self.refresh()
                return
        if state != ST_CLEARED:
            log("calls", "host reports call %d %s, unknown here" % (call, STATE_NAMES[state]))

    def set_online(self, online):
        if online != self.online:
            self.online = online
            if not online:
                self._offline_since = time.ticks_ms()
            self.refresh()

    # --- outputs ---
    @staticmethod
    def _answered(a):
        # the console took the call (acknowledged, or a nurse is in the room): PLACED and
        # ESCALATED are not
        st = a[A_STATE]
        return st == ST_ACKNOWLEDGED or st == ST_ATTENDED

    def top(self):
        for s in range(_SLOTS):
            if self.active[s] is not None:
                return s
        return -1

    def status(self):
        return self.presence, self.cord_fault, self.device_fault

    def refresh(self):
        """Bring lamps and buzzer in line with the state; cheap, called on every change."""
        lamps = self.lamps
        top = self.top()
        if top < 0:
            if not self.configured:
                lamps.set(L.REASSURE, L.NOT_CONFIGURED)
            elif not self.online:
                lamps.set(L.REASSURE, L.OFFLINE)
            else:
                lamps.set(L.REASSURE, L.OFF)
            lamps.set(L.DOME, L.OFF)
        else:
            pat = KINDS[SLOT_KIND[top]][2]
            lamps.set(L.REASSURE, L.ACKNOWLEDGED if self._answered(self.active[top]) else pat)
            lamps.set(L.DOME, pat)
        lamps.set(L.PRESENCE, L.STEADY if self.presence else L.OFF)
        alarm = 0
        if not self.online and time.ticks_diff(time.ticks_ms(), self._offline_since) >= _OFFLINE_ALARM_MS:
            for s in range(_SLOTS):
                a = self.active[s]
                if a is not None and not self._answered(a):
                    alarm = KINDS[SLOT_KIND[s]][1]
                    break
        self.buzzer.alarm(alarm)
