# Runs first at every start (and after mpremote's soft reset): decide on maintenance mode, then
# (never in maintenance mode) finish or undo an over-the-air update (lib/otaboot.py).
import maint

maint.check()
if not maint.active:
    try:
        import otaboot
        otaboot.boot()
        if not otaboot.in_trial():
            # nothing to watch: its code leaves the heap (an update or a crash loads it again)
            import sys
            del otaboot
            sys.modules.pop("otaboot", None)
    except Exception as e:  # noqa: BLE001 - the update step must never stop the board starting
        print("wardcall: ota: boot step failed: %r" % (e,))
