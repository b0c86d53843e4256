# Over-the-air update: the CMD_OTA_* commands' entry (docs/PROTOCOL.md section 12), imported by
# commands.py at the first OTA command. It answers CMD_OTA_STATUS itself (the update state from
# otaboot, the running version, the installed serial and key from otacheck), so that the host's
# status questions (before an update, and every half second of a new firmware's trial) never load
# the receiver (ota.py, which the board compiles when an update shipped it as source); it loads
# the receiver for the other commands, and gives the heap back: the receiver and the update's
# modules, this one included, are dropped when no update is in progress (kept during a trial) and
# at once on a MemoryError, which is answered otaproto.R_NO_MEMORY instead of leaving the command
# unanswered. Apart from one import line in commands.py, nothing of the update is in the heap of a
# terminal that is not being updated.
from micropython import const
import gc
import sys

import otaboot as B
import otacheck as C
import otaproto as O
from log import log
from version import VERSION
from wardproto import CMD_OTA_STATUS

_WHY_MAX = const(120)
_MODULES = ("ota", "otacmd", "otacheck", "otaproto", "otatext")   # and otaboot unless on trial


def handle(commands, cmd, arg):
    """commands.Commands.handle for an OTA command; the receiver is commands.ota (None: not loaded)."""
    try:
        if cmd == CMD_OTA_STATUS:
            ok, detail, after = 1, status(commands.ota.rx() if commands.ota is not None else None), None
        else:
            if commands.ota is None:
                gc.collect()           # the receiver's import (compiled here if sent as .py) wants room
                from ota import Receiver
                commands.ota = Receiver(commands.calls.outbox)
            ok, detail, after = commands.ota.handle(cmd, arg)
            # each chunk leaves ~1 KB of garbage (its copy from the frame, the answer): collected
            # now, the next chunk's copy takes the same place instead of a new one further up,
            # and the heap does not fragment under the TLS session's long-lived objects
            gc.collect()
    except MemoryError as e:
        release(commands)             # first of all: the heap back to the calls
        log("ota", "out of memory (%s): the receiver and any update in progress dropped" % e)
        return 0, O.result(O.R_NO_MEMORY), None
    if after is None and (commands.ota is None or not commands.ota.busy()) and not B.in_trial():
        release(commands)
    return ok, detail, after


def release(commands):
    commands.ota = None
    for name in _MODULES:
        sys.modules.pop(name, None)
    if not B.in_trial():            # on trial the boot chain's otaboot holds the trial (boot.py)
        sys.modules.pop("otaboot", None)
    gc.collect()


def _ascii(text, limit):
    return "".join([c for c in text[:limit] if 32 <= ord(c) < 127 and c != '"' and c != "\\"])


def status(rx=None):
    """The RESULT detail (otaproto R_STATUS); rx: [declared, file, offset] of a transfer in progress."""
    st = B.read()
    d = {"s": st.get("s", "idle"), "v": st.get("v", ""), "from": st.get("from", ""), "run": VERSION,
         "serial": C.installed_serial(), "key": C.key_state()}
    if rx is not None:
        d["rx"] = rx
    why = st.get("why", "")
    if why:
        d["why"] = _ascii(why, _WHY_MAX)
    return O.result(O.R_STATUS, d)
