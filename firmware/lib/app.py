# Wiring: config, state, outputs, inputs, the call state machine, the link, the supervisor. Each
# part gets its collaborators in its constructor; calls and the link share an Outgoing (messages
# for the host), so neither needs the other to send.
from micropython import const
import gc
import sys
import asyncio
import board

import flash
from version import VERSION
from log import log
from clock import Clock
from outbox import Outbox
from outgoing import Outgoing
from lamps import Lamps
from buzzer import Buzzer
from inputs import Inputs
from calls import Calls
from supervisor import Supervisor

_WDT_MS = const(10000)
_LOW_MEM = const(8192)
_MEM_LOG_MS = const(10000)


class App:
    def __init__(self):
        log("boot", "wardcall bed terminal firmware %s on board %s" % (VERSION, board.NAME))
        import config
        self.cfg, err = config.load()
        del config
        sys.modules.pop("config", None)     # the checks' code leaves the heap (CMD_CONFIG loads it again)
        self.debug = bool(self.cfg and self.cfg.get("debug"))
        self.clock = Clock()
        self.boot = flash.next_boot()
        self.outbox = Outbox(self.boot)
        self.lamps = Lamps()
        self.buzzer = Buzzer()
        self.out = Outgoing()
        self.calls = Calls(self.boot, self.outbox, self.lamps, self.buzzer, self.clock, self.out)
        self.link = None
        if err:
            log("config", "NOT CONFIGURED: %s" % err)
            log("config", "running locally only (lamps, buzzer); deploy a valid config.json "
                "(wardcall provision) and reset")
            self.calls.configured = False
        self.calls.refresh()
        self.inputs = Inputs(self.calls.on_input)
        sup = self.sup = Supervisor(self._restarted)
        sup.add("inputs", self.inputs.run, 2000)
        sup.add("lamps", self.lamps.run, 2000)
        sup.add("buzzer", self.buzzer.run, 5000)
        if self.cfg:
            from commands import Commands
            from link import Link
            commands = Commands(self.lamps, self.buzzer, self.calls)
            self.link = Link(self.cfg, self.calls, self.outbox, self.clock, self.out, commands)
            sup.add("link", self.link.run, 60000)
        # the reader after the link: compiled from sources (after an update) the link's modules,
        # the largest, are compiled while the heap holds the least
        self.badge = None
        spec = getattr(board, "BADGE", None)    # None: no reader (or a pin map from before readers)
        if spec:
            gc.collect()
            self._start_badge(spec)
        sup.every(self._tick)
        # a new firmware on trial: the boot chain confirms it once online (boot.py keeps otaboot
        # loaded only then; a module loaded again has no trial, nothing is loaded for nothing)
        otaboot = sys.modules.get("otaboot")
        if otaboot is not None and otaboot.in_trial():
            sup.every(otaboot.Trial(self.link).tick)
        self._flash_fault = False
        self._low_mem = False
        self._mem_peak = 0
        self._mem_logged = self.clock.uptime_ms()
        gc.collect()
        log("boot", "ready (boot %d, heap used %d, free %d)" % (self.boot, gc.mem_alloc(), gc.mem_free()))

    def _start_badge(self, spec):
        from badge import reader
        try:
            self.badge = reader(spec, self.calls.presence_toggled, self.calls.device_problem)
        except (ValueError, OSError, TypeError) as e:      # pins the port refuses
            log("badge", "reader not set up: %r" % (e,))
            self.calls.device_problem("badge reader not set up")
            return
        self.sup.add("badge", self.badge.run, 2000)

    def _restarted(self, name):
        self.calls.device_problem("task %s restarted" % name)

    def _tick(self):
        up = self.clock.uptime_ms()
        self.calls.refresh()        # offline alarm timing
        if not self.outbox.ok and not self._flash_fault:
            self._flash_fault = True
            self.calls.device_problem("flash write failed")
        elif self.outbox.ok:
            self._flash_fault = False
        if gc.mem_free() < _LOW_MEM:
            gc.collect()
            if gc.mem_free() < _LOW_MEM and not self._low_mem:
                self._low_mem = True
                self.calls.device_problem("low memory: %d bytes free" % gc.mem_free())
        if self.debug:
            gc.collect()
            used = gc.mem_alloc()
            if used > self._mem_peak:
                self._mem_peak = used
            if up - self._mem_logged >= _MEM_LOG_MS:
                self._mem_logged = up
                self.log_mem()

    def log_mem(self):
        log("mem", "used %d peak %d free %d" % (gc.mem_alloc(), self._mem_peak, gc.mem_free()))

    async def main(self):
        await self.sup.run(_WDT_MS)


app = None


def run():
    global app
    try:
        app = App()
        asyncio.run(app.main())
    finally:
        asyncio.new_event_loop()
