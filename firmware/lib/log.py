# Console lines. Everything the firmware reports goes through here so that tests and the
# emulator's console capture see one format: "wardcall: <tag>: <message>".
import sys


def log(tag, msg):
    print("wardcall: %s: %s" % (tag, msg))


def exc(tag, msg, e):
    # an unexpected exception: one line plus its traceback
    print("wardcall: %s: %s: %r" % (tag, msg, e))
    try:
        sys.print_exception(e)
    except Exception:  # noqa: BLE001 - printing must never fail the caller
        pass
