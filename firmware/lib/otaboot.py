# Over-the-air update, the boot half: the swap and the rollback (docs/DEPLOY.md, "Over-the-air
# updates"). boot.py calls boot() before the application starts (never in maintenance mode).
# This module is NEVER replaced by an update (nor are boot.py, main.py, maint.py, board.py):
# it must keep working whatever the new firmware does, so it uses only os, json and machine.
#
# .ota/state.json (a folder name that cannot shadow the module ota), written atomically (temporary file + rename):
#   {"s": "pending", "v": new version, "from": running version, "files": [path, ...], "trial_ms": n}
#        written by ota.py on CMD_OTA_COMMIT; the new files are staged under .ota/new/<path>
#   "swapping"   boot() is moving files (+ "moved", "added": the journal a rollback undoes)
#   "trial"      the new firmware runs; the previous files wait in .ota/old/<path>
#   "confirmed"  the new firmware reached the host (ota.Trial calls confirm()); .ota/old deleted
#   "rolled_back" (+ "why")  a boot found "trial" or "swapping": .ota/old put back
import os
import json

NEW = ".ota/new/"
OLD = ".ota/old/"
STATE = ".ota/state.json"
# module names an update may never ship (the boot chain and the board's own pin map)
PROTECTED = ("boot", "main", "maint", "otaboot", "board")
WDT_EXTRA_MS = 30000       # the trial watchdog: the trial time plus this (a hang before the app)

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


def read():
    try:
        with open(STATE) as f:
            st = json.load(f)
        return st if isinstance(st, dict) else {}
    except (OSError, ValueError):
        return {}


def write(st):
    makedirs(".ota")
    tmp = STATE + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(st))
    try:
        os.rename(tmp, STATE)
    except OSError:
        remove(STATE)
        os.rename(tmp, STATE)


def in_trial():
    return state is not None and state.get("s") == "trial"


def _swap(st):
    files = st["files"]
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
    new = {"s": "rolled_back", "v": st.get("v", ""), "from": st.get("from", ""), "why": why[:120]}
    write(new)
    if not bad:
        rmtree(OLD)
    rmtree(NEW)
    _log("ROLLED BACK from %s to %s: %s" % (new["v"], new["from"], why))
    return new


def _expired(_t=None):
    if in_trial():
        failed("not online at the host within %d s" % (state.get("trial_ms", 0) // 1000))


def failed(why):
    """The new firmware cannot run (crash at start, trial time over): reset; boot() rolls back."""
    if in_trial():
        state["why"] = why[:120]
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
    except Exception as e:  # noqa: BLE001 - the watchdog below still bounds the trial
        _log("no trial timer (%r)" % (e,))
    try:
        from machine import WDT
        WDT(timeout=ms + WDT_EXTRA_MS)       # the application re-arms it with its own timeout
    except Exception as e:  # noqa: BLE001
        _log("no trial watchdog (%r)" % (e,))


def confirm():
    """The new firmware reached the host: keep it. True if there was a trial to confirm."""
    global _timer
    if not in_trial():
        return False
    if _timer is not None:
        _timer.deinit()
        _timer = None
    state["s"] = "confirmed"
    state.pop("moved", None)
    state.pop("added", None)
    write(state)
    rmtree(OLD)
    _log("firmware %s confirmed (was %s)" % (state.get("v"), state.get("from")))
    return True


def boot():
    """At every start before the application: swap in a committed update, or roll back one
    that did not confirm. Returns the state."""
    global state
    st = read()
    s = st.get("s")
    if s == "pending":
        _log("installing firmware %s (was %s, %d file(s))" % (st.get("v"), st.get("from"), len(st.get("files", ()))))
        try:
            _swap(st)
        except Exception as e:  # noqa: BLE001 - a missing staged file, a full flash: undo
            st = rollback(st, "swap failed: %r" % (e,))
        else:
            _arm(st.get("trial_ms", 60000))
            _log("trial of %s: it must reach the host within %d s" % (st.get("v"), st.get("trial_ms", 60000) // 1000))
    elif s == "trial":
        st = rollback(st, st.get("why") or "restarted before the new firmware was confirmed")
    elif s == "swapping":
        st = rollback(st, "the swap was interrupted")
    state = st
    return st
