# The outbox: CALL and CANCEL events kept on flash until the host acknowledges them (CALL_ACK).
# Every change rewrites one small file atomically (temporary file, then rename), so a power cut
# leaves the old or the new list. Bounded: at MAX_EVENTS the oldest call that is already
# cancelled (its CALL and CANCEL both still pending) is dropped from the log to make room.
# After every WELCOME the calls still open here whose CALL the host already acknowledged are
# queued again in RAM only (`again`, ahead of the stored events; never written to flash), so a
# host that lost its record learns them again (docs/SESSION.md, Calls).
from micropython import const
import time
from wardproto import CALL, CANCEL

from flash import read_json, write_json
from log import log

PATH = "outbox.json"
MAX_EVENTS = const(32)

# an event: [type, call id, kind (CALL) or reason (CANCEL), slot, boot, ticks, unix s or 0]
# followed in RAM only by [sent: ticks of the last send or None]
F_TYPE = const(0)
F_CALL = const(1)
F_ARG = const(2)
F_SLOT = const(3)
F_BOOT = const(4)
F_TICKS = const(5)
F_UNIX = const(6)
F_SENT = const(7)
_STORED = const(7)


def _valid(ev):
    if not isinstance(ev, list) or len(ev) != _STORED or ev[F_TYPE] not in (CALL, CANCEL):
        return False
    for v in ev:
        if not isinstance(v, int) or v < 0:
            return False
    return ev[F_CALL] <= 0xFFFFFFFF and ev[F_ARG] <= 0xFF and ev[F_UNIX] <= 0xFFFFFFFF


class Outbox:
    def __init__(self, boot, path=PATH):
        self.boot = boot
        self.path = path
        self.ok = True      # False after a flash write failed (a device fault)
        self.items = []
        self.again = []     # RAM only: re-announced CALLs of open calls, sent before items
        for ev in read_json(path, []):
            if _valid(ev):
                ev.append(None)
                self.items.append(ev)
            else:
                log("outbox", "invalid stored event %r dropped" % (ev,))
        if self.items:
            log("outbox", "%d undelivered event(s) from before the restart" % len(self.items))

    def __len__(self):
        return len(self.items)

    def _save(self):
        try:
            write_json(self.path, [ev[:_STORED] for ev in self.items])
            self.ok = True
        except OSError as e:
            self.ok = False
            log("outbox", "flash write failed: %r (events kept in RAM)" % (e,))
        return self.ok

    def _make_room(self):
        if len(self.items) < MAX_EVENTS:
            return
        for ev in self.items:
            if ev[F_TYPE] == CALL:
                for other in self.items:
                    if other[F_TYPE] == CANCEL and other[F_CALL] == ev[F_CALL]:
                        log("outbox", "full: dropping finished call %d from the log" % ev[F_CALL])
                        self.items.remove(ev)
                        self.items.remove(other)
                        return
        ev = self.items.pop(0)
        log("outbox", "full: dropping the oldest event %r" % (ev[:_STORED],))

    def add(self, mtype, call, arg, slot, unix):
        """Persist an event before it is sent; returns True if it reached the flash."""
        self._make_room()
        ev = [mtype, call, arg, slot, self.boot, time.ticks_ms(), unix, None]
        self.items.append(ev)
        return self._save()

    def ack(self, call, of):
        for ev in self.again:
            if ev[F_CALL] == call and ev[F_TYPE] == of:
                self.again.remove(ev)
                return True
        for ev in self.items:
            if ev[F_CALL] == call and ev[F_TYPE] == of:
                self.items.remove(ev)
                self._save()
                return True
        return False

    def waiting(self, mtype, call):
        """True if an event of this type for this call is stored, not yet acknowledged."""
        for ev in self.items:
            if ev[F_CALL] == call and ev[F_TYPE] == mtype:
                return True
        return False

    def unsend(self, again=()):
        """A new session: every stored event is due again, and `again` (events built like
        add()'s, for calls still open here whose CALL was acknowledged before) is queued in RAM,
        in front of them, replacing the previous session's."""
        for ev in self.items:
            ev[F_SENT] = None
        self.again = list(again)
        for ev in self.again:
            ev[F_SENT] = None

    def age_ms(self, ev, clock):
        """How long ago ev happened: from ticks in this boot, else from the host-synced clock."""
        if ev[F_BOOT] == self.boot:
            age = time.ticks_diff(time.ticks_ms(), ev[F_TICKS])
        elif ev[F_UNIX] and clock.synced():
            age = (clock.unix() - ev[F_UNIX]) * 1000
        else:
            age = 0
        if age < 0:
            return 0
        return age if age < 0xFFFFFFFF else 0xFFFFFFFF
