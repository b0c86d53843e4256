# Host commands (COMMAND → RESULT). They arrive on the authenticated session only, so they are
# authenticated like everything else. handle() returns (ok, detail, after) where after is None,
# "reboot" (reset once the RESULT is sent) or "reconnect" (new settings take effect).
import gc
import json
import sys
from wardproto import (CMD_IDENTIFY, CMD_LAMP_TEST, CMD_REBOOT, CMD_CONFIG, CMD_CHIME, CMD_SILENCE,
                       ALARM_LOW, ALARM_HIGH, CMD_OTA_BEGIN, CMD_OTA_STATUS)

import config
import lamps as L
import otaboot
from log import log

IDENTIFY_MS = 10000
LAMP_TEST_MS = 2000
# the over-the-air receiver's modules, loaded by the first OTA command and dropped when no update
# is in progress (otaboot stays: the application uses it)
_OTA_MODULES = ("ota", "otastatus", "otacheck", "otaproto", "otatext")
# otaproto's RESULT detail R_NO_MEMORY, written out here: with no memory left, nothing is imported
_NO_MEMORY = '{"c": "no_memory"}'


class Commands:
    def __init__(self, lamps, buzzer, calls, on_config):
        self.lamps = lamps
        self.buzzer = buzzer
        self.calls = calls
        self.on_config = on_config     # on_config(new config dict)
        self.ota = None                # ota.Receiver, loaded by the first OTA command

    def handle(self, cmd, arg):
        if cmd == CMD_IDENTIFY:
            log("cmd", "identify")
            self.lamps.override(L.IDENTIFY, IDENTIFY_MS)
            return 1, "identify", None
        if cmd == CMD_LAMP_TEST:
            log("cmd", "lamp test")
            self.lamps.override(L.STEADY, LAMP_TEST_MS)
            self.buzzer.test(LAMP_TEST_MS)
            return 1, "lamp test", None
        if cmd == CMD_REBOOT:
            log("cmd", "reboot")
            return 1, "rebooting", "reboot"
        if cmd == CMD_CONFIG:
            try:
                changes = json.loads(bytes(arg).decode())
            except (ValueError, UnicodeError) as e:
                return 0, "config change is not JSON: %r" % (e,), None
            cfg, err = config.update(changes)
            if err:
                log("cmd", "config change refused: %s" % err)
                return 0, err, None
            log("cmd", "config changed: %s" % ",".join(sorted(changes)))
            self.on_config(cfg)
            return 1, "config written", "reconnect"
        if cmd == CMD_CHIME:
            if len(arg) != 1 or not ALARM_LOW <= arg[0] <= ALARM_HIGH:
                return 0, "chime needs one byte, an alarm priority 1-3", None
            if not self.calls.presence:
                return 0, "no staff present", None
            self.buzzer.chime(arg[0])
            return 1, "chime", None
        if cmd == CMD_SILENCE:
            self.buzzer.silence()
            return 1, "silenced", None
        if CMD_OTA_BEGIN <= cmd <= CMD_OTA_STATUS:
            return self._ota(cmd, arg)
        log("cmd", "unsupported command %d" % cmd)
        return 0, "unsupported command %d" % cmd, None

    def _ota(self, cmd, arg):
        try:
            if cmd == CMD_OTA_STATUS:          # answered without loading the receiver
                from otastatus import status
                ok, detail, after = 1, status(self.ota.rx() if self.ota is not None else None), None
            else:
                if self.ota is None:
                    gc.collect()           # the receiver's import (compiled here if sent as .py) wants room
                    from ota import Receiver
                    self.ota = Receiver(self.calls.outbox)
                ok, detail, after = self.ota.handle(cmd, arg)
        except MemoryError as e:
            self.release_ota()         # first of all: the heap back to the calls
            log("ota", "out of memory (%s): the receiver and any update in progress dropped" % e)
            return 0, _NO_MEMORY, None
        # kept while an update is in progress, and during a trial (the host asks its status until
        # it is confirmed); otherwise its heap goes back to the application
        if after is None and (self.ota is None or not self.ota.busy()) and not otaboot.in_trial():
            self.release_ota()
        return ok, detail, after

    def release_ota(self):
        self.ota = None
        for name in _OTA_MODULES:
            sys.modules.pop(name, None)
        gc.collect()
