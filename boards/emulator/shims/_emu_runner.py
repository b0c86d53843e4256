# Emulated ESP32 board: the script each interpreter runs (`micropython -i _emu_runner.py`, with
# cwd = the board's flash folder and the shims on MICROPYPATH).
# It connects the shims to the supervisor and imports them, mounts the flash folder at "/"
# (VfsPosix: "/config.json", os.listdir("/") and mpremote's ":/x" see the flash, nothing of the
# host), sets sys.path as on an ESP32 (['', '.frozen', '/lib']), runs boot.py and, after a hard
# reset, a power-on or a soft reset from a running program, main.py, then falls through to the
# interpreter's REPL. The supervisor is told when the program stops running so that it turns a
# Ctrl-C byte into SIGINT only while a program runs.
import sys
import _emu

_emu.use_python_asyncio()
import machine, network, select, socket, time  # noqa: E401  (the shims; the flash hides their folder)

del machine, network, select, socket, time
import _emu_tls  # noqa: E402  (the builtin tls cannot be overridden by a file: see _emu_tls.py)

sys.modules["tls"] = _emu_tls
del _emu_tls
import os as _wc_os
import vfs as _wc_vfs

_wc_flash = _wc_os.getcwd()
if _wc_os.getenv("WC_NOMOUNT") != "1":
    _wc_vfs.umount("/")
    _wc_vfs.mount(_wc_vfs.VfsPosix(_wc_flash), "/")
    _wc_os.chdir("/")
    sys.path[:] = ["", ".frozen", "/lib"]
del _wc_os, _wc_vfs, _wc_flash


def _wc_run(_wc_fn):
    try:
        _wc_f = open(_wc_fn)
        _wc_f.close()
    except OSError:
        return True
    try:
        execfile(_wc_fn, globals())
    except SystemExit:
        _emu.reset_now("soft")  # as on an ESP32: sys.exit() in boot.py/main.py soft-resets
    except BaseException as _wc_e:
        sys.print_exception(_wc_e)
        return False
    return True


_emu.send("r 1")
try:
    if _wc_run("boot.py") and _emu.ros.getenv("WC_MAIN") == "1":
        _wc_run("main.py")
except KeyboardInterrupt:
    pass
try:
    _emu.send("r 0")
    _emu.wait_ack(1000)
except KeyboardInterrupt:
    pass
del _wc_run
