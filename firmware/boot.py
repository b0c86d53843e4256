# Runs first at every start (and after mpremote's soft reset): decide on maintenance mode.
import maint

maint.check()
