# MicroPython: the terminal's half for tests/ota/test_host_ota.py. The real boot step (otaboot.boot,
# as boot.py runs it), the real receiver (ota.Receiver) and the real trial (otaboot.Trial), from
# the flash folder (the working directory, lib/ first on MICROPYPATH), driven over stdin/stdout by
# the host's test in place of a session:
#   in:  C <cmd_id> <cmd> [<hex arg>]   a COMMAND
#        O <n>                          the outbox now holds n undelivered call events
#   out: BOOT <version> <state json>    after the boot step (the session is "up" from here)
#        R <cmd_id> <ok> <after> <hex detail>   its RESULT; after "reboot" the process ends (a reset)
# Argument "broken": a new firmware on trial crashes at start (main.py calls otaboot.failed).
import sys
import json
import select
import binascii
import otaboot

st = otaboot.boot()
if len(sys.argv) > 1 and sys.argv[1] == "broken" and otaboot.in_trial():
    otaboot.failed("crashed at start: RuntimeError('broken on purpose')")    # machine.reset: exits

from version import VERSION   # noqa: E402 - after the swap: the version now installed
import ota   # noqa: E402


class Link:
    online = True
    hb_ms = 50


trial = otaboot.Trial(Link()) if otaboot.in_trial() else None
outbox = []
r = ota.Receiver(outbox)
print("BOOT", VERSION, json.dumps(st))
poll = select.poll()
poll.register(sys.stdin, select.POLLIN)
while True:
    if trial is not None:
        trial.tick()
    if not poll.poll(20):
        continue
    line = sys.stdin.readline()
    if not line:
        break
    parts = line.split()
    if parts[0] == "O":
        while len(outbox) > int(parts[1]):
            outbox.pop()
        while len(outbox) < int(parts[1]):
            outbox.append("event")
    elif parts[0] == "C":
        arg = binascii.unhexlify(parts[3]) if len(parts) > 3 else b""
        ok, detail, after = r.handle(int(parts[2]), arg)
        print("R", parts[1], ok, after or "-", binascii.hexlify(detail.encode()).decode())
        if after == "reboot":
            sys.exit(0)
