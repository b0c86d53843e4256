# Over-the-air update: the answer to CMD_OTA_STATUS (docs/PROTOCOL.md section 12): the update state
# (otaboot's state file), the running version, the installed serial and the update key (otacheck).
# A module of its own so that the host's status questions (before an update, and every half
# second of a new firmware's trial) load only this and the boot chain's modules, not the receiver
# (ota.py, which an update shipped as source makes the board compile). Dropped with the receiver
# when no update is in progress (commands.py).
from micropython import const
import otaboot as B
import otacheck as C
import otaproto as O
from version import VERSION

_WHY_MAX = const(120)


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
