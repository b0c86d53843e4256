# Host commands (COMMAND → RESULT). They arrive on the authenticated session only, so they are
# authenticated like everything else. handle() returns (ok, detail, after) where after is None,
# "reboot" (reset once the RESULT is sent) or "reconnect" (the config changed on the flash: the
# link takes it up and reconnects with the new settings).
from micropython import const
import gc
import json
import sys
from wardproto import (CMD_IDENTIFY, CMD_LAMP_TEST, CMD_REBOOT, CMD_CONFIG, CMD_CHIME, CMD_SILENCE,
                       CMD_NOTIFY, ALARM_LOW, ALARM_HIGH, CMD_OTA_BEGIN, CMD_OTA_STATUS, KINDS,
                       ProtocolError, parse_notify)

import lamps as L
from log import log

_IDENTIFY_MS = const(10000)
_LAMP_TEST_MS = const(2000)


class Commands:
    def __init__(self, lamps, buzzer, calls):
        self.lamps = lamps
        self.buzzer = buzzer
        self.calls = calls
        self.ota = None                # ota.Receiver, loaded by the first OTA command

    def handle(self, cmd, arg):
        if cmd == CMD_IDENTIFY:
            log("cmd", "identify")
            self.lamps.override(L.IDENTIFY, _IDENTIFY_MS)
            return 1, "identify", None
        if cmd == CMD_LAMP_TEST:
            log("cmd", "lamp test")
            self.lamps.override(L.STEADY, _LAMP_TEST_MS)
            self.buzzer.test(_LAMP_TEST_MS)
            return 1, "lamp test", None
        if cmd == CMD_REBOOT:
            log("cmd", "reboot")
            return 1, "rebooting", "reboot"
        if cmd == CMD_CONFIG:
            try:
                changes = json.loads(bytes(arg).decode())
            except (ValueError, UnicodeError) as e:
                return 0, "config change is not JSON: %r" % (e,), None
            import config          # loaded for the change (the application unloads it after boot)
            cfg, err = config.update(changes)
            if err:
                log("cmd", "config change refused: %s" % err)
                return 0, err, None
            log("cmd", "config changed: %s" % ",".join(sorted(changes)))
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
            self.lamps.notify(None, 0)
            return 1, "silenced", None
        if cmd == CMD_NOTIFY:
            return self._notify(arg)
        if CMD_OTA_BEGIN <= cmd <= CMD_OTA_STATUS:
            if "otacmd" not in sys.modules:
                # the import builds the update's modules object by object: on a heap with the
                # last command's garbage still in it they interleave with it, and a module's
                # globals table finds no 1.2 KB block (the collection a failed allocation makes
                # comes too late, mid-import)
                gc.collect()
            try:
                import otacmd          # the update's entry: loads the receiver, gives the heap back
            except MemoryError:        # otaproto.R_NO_MEMORY: the host says so, and asks again later
                return 0, '{"c": "no_memory"}', None
            return otacmd.handle(self, cmd, arg)
        log("cmd", "unsupported command %d" % cmd)
        return 0, "unsupported command %d" % cmd, None

    def _notify(self, arg):
        # a call routed to staff located in this room: one burst of its priority, and its kind's
        # pattern on the dome for a while; the terminal's own calls are not touched (and keep
        # the dome while they are open). Any terminal of the room takes it, presence or not.
        try:
            kind, prio, secs = parse_notify(arg)
        except ProtocolError as e:
            return 0, e.message, None
        if not secs:
            self.lamps.notify(None, 0)
            self.buzzer.silence()
            log("cmd", "notify stopped")
            return 1, "notify stopped", None
        name = KINDS[kind][0]
        self.lamps.notify(KINDS[kind][2], secs * 1000)
        self.buzzer.chime(prio)
        log("cmd", "notify %s (priority %d) for %d s" % (name, prio, secs))
        if not self.lamps.has_dome:
            return 1, "notify %s %d s (no dome light: burst only)" % (name, secs), None
        return 1, "notify %s %d s" % (name, secs), None
