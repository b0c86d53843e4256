# Runs after boot.py at a hard start: the application, unless in maintenance mode.
import maint

if maint.active is None:
    maint.check()
if not maint.active:
    try:
        import app
        app.run()
    except Exception as e:  # noqa: BLE001
        import otaboot
        if otaboot.in_trial():      # a new firmware that cannot start: reset, boot.py rolls back
            import sys
            sys.print_exception(e)
            otaboot.failed("crashed at start: %r" % (e,))
        raise
