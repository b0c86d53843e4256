# Messages for the host that are not kept on flash (PRESENCE, FAULT, RESULT), and the wake-up of
# the link's sender task. The call state machine and the link share one Outgoing, so neither
# needs the other to send. While a session is up, messages queue in RAM (bounded) for the
# sender. While the link is down they are dropped - the heartbeats carry presence and the fault
# bits, so the host resynchronises - except FAULT: those are held in a small bounded queue
# (when full the oldest goes, with a console line) and go first, in order, after the next
# WELCOME, so the host's record gets every fault with its detail (docs/SESSION.md, Faults),
# e.g. "task link restarted", raised while the link itself was down.
from micropython import const
import asyncio
from wardproto import FAULT, TYPE_NAMES

from log import log

_TX_MAX = const(16)       # messages waiting for the live session
_HELD_MAX = const(8)      # FAULTs kept while the link is down


class Outgoing:
    def __init__(self):
        self.up = False           # a session is live: messages are queued for it
        self._tx = []             # [(type, fields)] for the live session, oldest first
        self._held = []           # [FAULT fields] raised while the link was down, oldest first
        self._ev = asyncio.Event()

    def __len__(self):
        return len(self._tx)

    def held(self):
        return len(self._held)

    # --- for the rest of the firmware ---
    def send(self, mtype, fields):
        """Send on the live session as soon as the sender can; while the link is down only a
        FAULT is kept (for the next session), anything else is dropped."""
        if self.up:
            if len(self._tx) >= _TX_MAX:
                log("link", "send queue full: dropping %s" % TYPE_NAMES[self._tx[0][0]])
                self._tx.pop(0)
            self._tx.append((mtype, fields))
            self._ev.set()
        elif mtype == FAULT:
            self._hold(fields)

    def wake(self):
        """Something to send (a new outbox event, an acknowledgement): wake the sender."""
        self._ev.set()

    def _hold(self, fields):
        if len(self._held) >= _HELD_MAX:
            old = self._held.pop(0)
            log("link", "offline fault queue full: dropping FAULT %d (%s)" % (old["code"], old["detail"]))
        self._held.append(fields)

    # --- for the link ---
    def start(self):
        """A session is up (after WELCOME): the held FAULTs are the first messages, in order."""
        self._tx = [(FAULT, f) for f in self._held]
        self._held = []
        self.up = True
        if self._tx:
            self._ev.set()
        return len(self._tx)

    def stop(self):
        """The session ended: FAULTs not yet written are held for the next one, the rest dropped."""
        self.up = False
        left = self._tx
        self._tx = []
        for mtype, fields in left:
            if mtype == FAULT:
                self._hold(fields)

    def first(self):
        """The next message to write, or None; it stays queued until done()."""
        return self._tx[0] if self._tx else None

    def done(self):
        """The message first() gave was written (or cannot be encoded): forget it."""
        if self._tx:
            self._tx.pop(0)

    def clear_wake(self):
        self._ev.clear()

    async def wait_wake(self, ms):
        """Until wake() (or a send) or ms have passed."""
        try:
            await asyncio.wait_for_ms(self._ev.wait(), ms)
        except asyncio.TimeoutError:
            pass
