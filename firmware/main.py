# Runs after boot.py at a hard start: the application, unless in maintenance mode.
import maint

if maint.active is None:
    maint.check()
if not maint.active:
    import app
    app.run()
