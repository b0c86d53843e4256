# Over-the-air update, the boot chain's half (docs/DEPLOY.md section 10): the swap, the trial's
# confirmation and the rollback; the signature and file check before a swap is otacheck's
# (imported only when there is an update to check, so a normal start costs no heap for it).
# boot.py calls boot() before the application starts (never in maintenance mode). This module is
# NEVER replaced by an update (nor are otacheck, otaproto, otatext, boot.py, main.py, maint.py,
# board.py): it must keep working whatever the new firmware does, so it uses only os, sys, json,
# time, machine.
#
# .ota/state.json (a folder name that cannot shadow the module ota), written atomically (temporary file + rename):
#   "pending"    written by ota.py on CMD_OTA_COMMIT: the signed statement's fields (v, serial, n,
#                size, m, kid, sig) and "files": [[path, size, sha256], ...] staged under
#                .ota/new/<path>; boot() checks the signature and every file before the swap
#   "refused"    (+ "why") the staged update did not pass that check: nothing was swapped
#   "swapping"   boot() is moving files (+ "moved", "added": the journal a rollback undoes)
#   "trial"      the new firmware runs; the previous files wait in .ota/old/<path>
#   "confirmed"  the new firmware reached the host (Trial.tick calls confirm()); .ota/old deleted
#   "rolled_back" (+ "why")  a boot found "trial" or "swapping": .ota/old put back
# .ota/installed.json {"serial", "v"}: the serial of the last confirmed update; an update must
#   carry a greater one. Kept across deploys (deploy removes only state.json).
from micropython import const
import os
import json
import time

NEW = ".ota/new/"
OLD = ".ota/old/"
STATE = ".ota/state.json"
INSTALLED = ".ota/installed.json"
_WDT_EXTRA_MS = const(30000)   # the trial watchdog: the trial time plus this (a hang before the app)
_CONFIRM_MS = const(2000)      # online this long (and >= 3 heartbeats) before confirming
_WHY_MAX = const(120)

state = None               # the state after boot() (dict), None when boot() did not run
_timer = None


def _log(msg):
    print("wardcall: ota: %s" % msg)


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def makedirs(path):
    """Create every folder of path (a folder path, no trailing slash needed)."""
    cur = ""
    for part in path.split("/"):
        if not part:
            continue
        cur = cur + "/" + part if cur else part
        try:
            os.mkdir(cur)
        except OSError:
            pass


def _parent(path):
    i = path.rfind("/")
    return path[:i] if i > 0 else ""


def rmtree(path):
    path = path.rstrip("/")
    try:
        entries = list(os.ilistdir(path))
    except OSError:
        return
    for e in entries:
        full = path + "/" + e[0]
        if e[1] == 0x4000:
            rmtree(full)
        else:
            remove(full)
    try:
        os.rmdir(path)
    except OSError:
        pass


def twin(path):
    """x.py for x.mpy and the reverse: a board must never hold both (x.py would be imported)."""
    if path.endswith(".mpy"):
        return path[:-4] + ".py"
    if path.endswith(".py"):
        return path[:-3] + ".mpy"
    return None


def _read_json(path):
    try:
        with open(path) as f:
            d = json.load(f)
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def read():
    return _read_json(STATE)


def _write_json(path, d):
    makedirs(".ota")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(d, f)            # streamed: the state of a big update is never one string in the heap
    try:
        os.rename(tmp, path)
    except OSError:
        remove(path)
        os.rename(tmp, path)


def write(st):
    _write_json(STATE, st)


def in_trial():
    return state is not None and state.get("s") == "trial"


# ----- swap, rollback, trial -----

def _swap(st):
    files = [e[0] for e in st["files"]]
    rmtree(OLD)
    moved = []
    added = []
    for p in files:
        if exists(p):
            moved.append(p)
        else:
            added.append(p)
        t = twin(p)
        if t and t not in files and exists(t):
            moved.append(t)
    st["s"] = "swapping"
    st["moved"] = moved
    st["added"] = added
    write(st)                      # from here a reboot rolls back
    for p in moved:
        makedirs(_parent(OLD + p))
        os.rename(p, OLD + p)
    for p in files:
        makedirs(_parent(p))
        os.rename(NEW + p, p)
    st["s"] = "trial"
    write(st)
    rmtree(NEW)


def _summary(st, s, why):
    return {"s": s, "v": st.get("v", ""), "from": st.get("from", ""), "serial": st.get("serial", 0),
            "why": why[:_WHY_MAX]}


def rollback(st, why):
    """Undo a swap (complete or interrupted); idempotent, so a power cut here is harmless."""
    bad = 0
    for p in st.get("added", ()):
        remove(p)
    for p in st.get("moved", ()):
        if exists(OLD + p):
            remove(p)
            try:
                os.rename(OLD + p, p)
            except OSError as e:
                bad += 1
                _log("cannot restore %s: %r" % (p, e))
    new = _summary(st, "rolled_back", why)
    write(new)
    if not bad:
        rmtree(OLD)
    rmtree(NEW)
    _log("ROLLED BACK from %s to %s: %s" % (new["v"], new["from"], why))
    return new


def _refuse(st, why):
    new = _summary(st, "refused", why)
    write(new)
    rmtree(NEW)
    _log("firmware %s NOT INSTALLED: %s" % (new["v"], why))
    return new


def _expired(_t=None):
    if in_trial():
        failed("not online at the host within %d s" % (state.get("trial_ms", 0) // 1000))


def failed(why):
    """The new firmware cannot run (crash at start, trial time over): reset; boot() rolls back."""
    if in_trial():
        state["why"] = why[:_WHY_MAX]
        try:
            write(state)
        except OSError:
            pass
        _log("new firmware %s failed: %s: resetting to roll back" % (state.get("v"), why))
    import machine
    machine.reset()


def _arm(ms):
    global _timer
    try:
        from machine import Timer
        _timer = Timer(0)
        _timer.init(mode=Timer.ONE_SHOT, period=ms, callback=_expired)
    except (ImportError, AttributeError, OSError, TypeError, ValueError) as e:
        _log("no trial timer (%r)" % (e,))      # the watchdog below still bounds the trial
    try:
        from machine import WDT
        WDT(timeout=ms + _WDT_EXTRA_MS)          # the application re-arms it with its own timeout
    except (ImportError, AttributeError, OSError, TypeError, ValueError) as e:
        _log("no trial watchdog (%r)" % (e,))


def confirm():
    """The new firmware reached the host: keep it. True if there was a trial to confirm."""
    global _timer, state
    if not in_trial():
        return False
    if _timer is not None:
        _timer.deinit()
        _timer = None
    # the serial first: a power cut between the two writes rolls back but never lowers the floor
    _write_json(INSTALLED, {"serial": state.get("serial", 0), "v": state.get("v", "")})
    state["s"] = "confirmed"
    state.pop("moved", None)
    state.pop("added", None)
    state.pop("sig", None)
    write(state)
    state = _summary(state, "confirmed", "")    # the file keeps the rest
    rmtree(OLD)
    _log("firmware %s confirmed (was %s)" % (state.get("v"), state.get("from")))
    return True


class Trial:
    """Confirms a firmware on trial once the link has been online for a few heartbeats. Here in
    the boot chain, so that an update cannot confirm itself by replacing it; the application
    only hands it its link (link.online, link.hb_ms) and calls tick() every supervisor check."""

    def __init__(self, link):
        self.link = link
        self.since = None
        self.done = False
        _log("firmware %s on trial (was %s)" % (state.get("v") if state else "?", state.get("from") if state else "?"))

    def tick(self):
        if self.done:
            return
        link = self.link
        if link is None or not link.online:
            self.since = None
            return
        now = time.ticks_ms()
        if self.since is None:
            self.since = now
            return
        need = 3 * link.hb_ms
        if need < _CONFIRM_MS:
            need = _CONFIRM_MS
        if time.ticks_diff(now, self.since) >= need:
            self.done = True
            confirm()


def boot():
    """At every start before the application: check and swap in a committed update, or roll
    back one that did not confirm. Returns the state."""
    global state
    st = read()
    s = st.get("s")
    if s == "pending":
        import sys
        import otacheck
        why = otacheck.check_staged(st)
        # the application starts next: the check's modules go (an update loads them again)
        del otacheck
        for name in ("otacheck", "otaproto", "otatext"):
            sys.modules.pop(name, None)
        if why:
            st = _refuse(st, why)
        else:
            _log("installing firmware %s (was %s, serial %d, %d file(s)): signature and files verified"
                 % (st.get("v"), st.get("from"), st.get("serial"), len(st.get("files", ()))))
            try:
                _swap(st)
            except (OSError, KeyError, IndexError, TypeError) as e:   # a missing staged file, a full flash
                st = rollback(st, "swap failed: %r" % (e,))
            else:
                _arm(st.get("trial_ms", 60000))
                _log("trial of %s: it must reach the host within %d s" % (st.get("v"), st.get("trial_ms", 60000) // 1000))
    elif s == "trial":
        st = rollback(st, st.get("why") or "restarted before the new firmware was confirmed")
    elif s == "swapping":
        st = rollback(st, "the swap was interrupted")
    # a trial keeps what a rollback needs (failed() writes it back), not the file list nor the
    # signature; any other state only its gist (the file keeps the rest)
    state = st
    if st.get("s") == "trial":
        st.pop("files", None)
        st.pop("sig", None)
    elif st:
        why = st.get("why")
        state = _summary(st, st.get("s"), why if isinstance(why, str) else "")
    return st
