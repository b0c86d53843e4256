# TEST-ONLY fault injection (MicroPython) for tests/firmware/test_e2e_supervision.py. This is
# not firmware: it never goes to a terminal through `wardcall deploy`. The test copies it to an
# emulated board's flash as /faulthook.py and puts two lines in front of the real main.py:
#
#     import faulthook
#     faulthook.install("inputs", "hang", 4)
#
# Everything else on the flash is the real firmware; the real application, supervisor, watchdog,
# outbox and link run unchanged. Only one supervised task's alive() callback goes through a
# gate that is called from inside that task's own loop. While the spare GPIO `pin` is grounded
# (the test closes the emulator contact "gpio<pin>"; on a real board: a jumper to GND) the gate
# acts once per boot:
#   "hang": the task leaves its loop and then awaits an event nobody sets, as a read without a
#           timeout would: it never reports alive again, while every other task goes on;
#   "fail": an unexpected error (ValueError) is raised out of the task's loop.
import asyncio
from machine import Pin

TASKS = {"inputs": ("inputs", "Inputs"), "lamps": ("lamps", "Lamps"),
         "buzzer": ("buzzer", "Buzzer"), "link": ("link", "Link")}


class _Hang(Exception):
    pass


def install(task, mode, pin):
    modname, clsname = TASKS[task]
    cls = getattr(__import__(modname), clsname)
    orig = cls.run
    trigger = Pin(pin, Pin.IN, Pin.PULL_UP)
    fired = [False]

    async def run(self, alive):
        def gate():
            if not fired[0] and trigger.value() == 0:
                fired[0] = True
                if mode == "hang":
                    raise _Hang()
                print("faulthook: task %s raises an injected error" % task)
                raise ValueError("injected fault in task %s" % task)
            alive()

        try:
            await orig(self, gate)
        except _Hang:
            print("faulthook: task %s hangs" % task)
            await asyncio.Event().wait()     # never set: the task is stuck from now on

    cls.run = run
    print("faulthook: armed: task %s, %s when gpio%d is grounded" % (task, mode, pin))
