# Maintenance mode: the application and the watchdog stay off so that mpremote can always
# deploy. Entered when the flag file exists on the flash, or when the presence button is held
# while the board starts. boot.py calls check(); main.py reads the result.
import os
import time

FLAG = "maintenance"
active = None        # None: not checked yet; "" : normal start; else the reason


def check():
    global active
    reason = ""
    try:
        os.stat(FLAG)
        reason = "flag file /%s present" % FLAG
    except OSError:
        pass
    if not reason:
        try:
            from machine import Pin
            import board
            p = Pin(board.PRESENCE, Pin.IN, Pin.PULL_UP)
            held = 0
            for _ in range(5):
                if p.value() == 0:
                    held += 1
                time.sleep_ms(10)
            if held == 5:
                reason = "presence button held at start"
        except (ImportError, AttributeError, OSError, ValueError) as e:
            print("wardcall: maint: cannot read the presence button: %r" % (e,))
    active = reason
    if reason:
        print("wardcall: maint: MAINTENANCE MODE (%s): application and watchdog not started" % reason)
        print("wardcall: maint: remove the flag (mpremote fs rm :%s) and reset to run" % FLAG)
    return reason
