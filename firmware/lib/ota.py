# Over-the-air update, the receiving half (docs/PROTOCOL.md, "Over-the-air update"): host
# commands CMD_OTA_* stage the new files under .ota/new/ (each checked for size and SHA-256, the
# total bounded by the free flash); CMD_OTA_COMMIT writes .ota/state.json "pending" and reboots,
# and boot.py (otaboot.boot) swaps them in for a trial. Trial.tick confirms the new firmware once
# it has been online for a few heartbeats. Loaded only when the host sends an OTA command (or in
# a trial), so it costs no heap otherwise. This module may itself be updated: a broken new one
# never confirms, and otaboot (never updated) rolls back.
from micropython import const
import os
import json
import time
import struct
import hashlib
import binascii

import otaboot as B
from log import log
from version import VERSION
from wardproto import (CMD_OTA_BEGIN, CMD_OTA_FILE, CMD_OTA_CHUNK, CMD_OTA_COMMIT, CMD_OTA_ABORT,
                       CMD_OTA_STATUS)

MAX_TOTAL = const(524288)      # bytes in one update
RESERVE = const(32768)         # flash that must stay free beside the staged files
MAX_FILES = const(64)
MIN_TRIAL_S = const(5)
MAX_TRIAL_S = const(600)
CONFIRM_MS = const(2000)       # online this long (and >= 3 heartbeats) before confirming


def valid_path(p):
    """A module under lib/ (x.py or x.mpy), plain ASCII names, never a protected module."""
    if not isinstance(p, str) or not p.startswith("lib/") or len(p) > 64:
        return False
    if ".." in p or "//" in p or p.endswith("/"):
        return False
    for c in p:
        o = ord(c)
        if not (48 <= o <= 57 or 65 <= o <= 90 or 97 <= o <= 122 or c in "_-./"):
            return False
    name = p[p.rfind("/") + 1:]
    if name.endswith(".mpy"):
        stem = name[:-4]
    elif name.endswith(".py"):
        stem = name[:-3]
    else:
        return False
    return bool(stem) and stem not in B.PROTECTED


def free_bytes():
    try:
        st = os.statvfs("/")
        return st[0] * st[4]
    except (OSError, AttributeError):
        return None


def _int(v, lo, hi):
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


class Receiver:
    def __init__(self, outbox=None):
        self.outbox = outbox        # its undelivered events make a commit wait
        self._clear()

    def _clear(self):
        self.id = None
        self.version = ""
        self.n = 0
        self.size = 0
        self.trial_s = 60
        self.files = []            # declared: [path, size, sha256 hex]
        self.cur = 0               # the file being received
        self.off = 0               # bytes of it written and hashed
        self.h = None

    def handle(self, cmd, arg):
        """(ok, detail, after) as commands.Commands.handle."""
        try:
            if cmd == CMD_OTA_BEGIN:
                return self._begin(arg)
            if cmd == CMD_OTA_FILE:
                return self._file(arg)
            if cmd == CMD_OTA_CHUNK:
                return self._chunk(arg)
            if cmd == CMD_OTA_COMMIT:
                return self._commit()
            if cmd == CMD_OTA_ABORT:
                if self.id is not None:
                    log("ota", "update %s aborted by the host" % self.version)
                B.rmtree(B.NEW)
                self._clear()
                return 1, "aborted", None
            if cmd == CMD_OTA_STATUS:
                return 1, self.status(), None
        except OSError as e:
            log("ota", "flash error: %r" % (e,))
            return 0, "flash error: %r" % (e,), None
        return 0, "unsupported command %d" % cmd, None

    def status(self):
        st = B.read()
        d = {"s": st.get("s", "idle"), "v": st.get("v", ""), "from": st.get("from", ""),
             "run": VERSION}
        if self.id is not None:
            d["rx"] = [self.cur, self.off]
        why = st.get("why", "")
        text = json.dumps(d)
        if why:
            room = 190 - len(text) - 10
            if room > 0:
                d["why"] = "".join([c for c in why[:room] if 32 <= ord(c) < 127 and c != '"' and c != "\\"])
                text = json.dumps(d)
        return text

    def _at(self):
        return "at %d %d" % (self.cur, self.off)

    def _begin(self, arg):
        try:
            m = json.loads(bytes(arg).decode())
            version, n, size, pid = m["v"], m["n"], m["size"], m["id"]
            trial_s = m.get("trial_s", 60)
        except (ValueError, KeyError, TypeError, UnicodeError, AttributeError):
            return 0, "bad OTA manifest", None
        if not isinstance(version, str) or not 0 < len(version) <= 32 or not isinstance(pid, str) \
                or not 0 < len(pid) <= 64 or not _int(n, 1, MAX_FILES) or not _int(size, 0, MAX_TOTAL) \
                or not _int(trial_s, MIN_TRIAL_S, MAX_TRIAL_S):
            return 0, "bad OTA manifest (limits: %d files, %d bytes, trial %d-%d s)" % (
                MAX_FILES, MAX_TOTAL, MIN_TRIAL_S, MAX_TRIAL_S), None
        if B.in_trial():
            return 0, "busy: firmware %s is still on trial" % B.state.get("v"), None
        if pid == self.id and n == self.n and size == self.size:
            log("ota", "resuming update %s at file %d offset %d" % (version, self.cur, self.off))
            return 1, self._at(), None
        B.rmtree(B.NEW)
        self._clear()
        free = free_bytes()
        if free is not None and size + RESERVE > free:
            return 0, "not enough flash: %d bytes needed, %d free" % (size + RESERVE, free), None
        self.id, self.version, self.n, self.size, self.trial_s = pid, version, n, size, trial_s
        B.makedirs(B.NEW + "lib")
        log("ota", "receiving firmware %s (%d file(s), %d bytes)" % (version, n, size))
        return 1, self._at(), None

    def _file(self, arg):
        if self.id is None:
            return 0, "no update in progress", None
        try:
            i, path, size, sha = json.loads(bytes(arg).decode())
        except (ValueError, TypeError, UnicodeError):
            return 0, "bad file declaration", None
        if not _int(i, 0, MAX_FILES) or not _int(size, 0, MAX_TOTAL) or not isinstance(sha, str) \
                or len(sha) != 64:
            return 0, "bad file declaration", None
        if not valid_path(path):
            return 0, "path %s may not be updated over the air" % path, None
        if i != self.cur or i >= self.n:
            return 0, "expected file %d" % self.cur, None
        if i < len(self.files):
            if self.files[i] != [path, size, sha]:
                return 0, "file %d declared differently before" % i, None
            return 1, "at %d" % self.off, None          # a resumed transfer
        for f in self.files:
            if f[0] == path or f[0] == B.twin(path):
                return 0, "file %s twice" % path, None
        if sum([f[1] for f in self.files]) + size > self.size:
            return 0, "files exceed the declared size", None
        self.files.append([path, size, sha])
        self.off = 0
        self.h = hashlib.sha256()
        B.makedirs(B.NEW + path[:path.rfind("/")])
        with open(B.NEW + path, "wb"):
            pass
        if size == 0:
            return self._finish()
        return 1, "at 0", None

    def _finish(self):
        path, size, sha = self.files[self.cur]
        got = binascii.hexlify(self.h.digest()).decode()
        self.h = None
        if got != sha:
            B.remove(B.NEW + path)
            self.files.pop()
            self.off = 0
            log("ota", "%s refused: SHA-256 %s, expected %s" % (path, got[:16], sha[:16]))
            return 0, "hash mismatch: %s" % path, None
        self.cur += 1
        self.off = 0
        return 1, "done %d" % (self.cur - 1), None

    def _chunk(self, arg):
        if self.id is None or len(arg) < 6:
            return 0, "no update in progress" if self.id is None else "short chunk", None
        i, off = struct.unpack(">HI", bytes(arg[:6]))
        n = len(arg) - 6
        if i < self.cur or (i == self.cur and off + n <= self.off and n):
            return 1, self._at(), None                   # a chunk seen before (resent)
        if i != self.cur or i >= len(self.files) or off != self.off:
            return 0, "expected %s" % self._at(), None
        path, size, _ = self.files[i]
        if off + n > size:
            return 0, "chunk past the end of %s" % path, None
        data = memoryview(arg)[6:]
        with open(B.NEW + path, "ab") as f:
            f.write(data)
        self.h.update(data)
        self.off += n
        if self.off == size:
            return self._finish()
        return 1, "at %d" % self.off, None

    def _commit(self):
        if self.id is None:
            return 0, "no update in progress", None
        if self.cur != self.n or len(self.files) != self.n:
            return 0, "incomplete: %d of %d file(s)" % (self.cur, self.n), None
        if sum([f[1] for f in self.files]) != self.size:
            return 0, "the files do not add up to the declared size", None
        if self.outbox is not None and len(self.outbox):
            return 0, "busy: %d call event(s) not yet delivered" % len(self.outbox), None
        st = {"s": "pending", "v": self.version, "from": VERSION,
              "files": [f[0] for f in self.files], "trial_ms": self.trial_s * 1000}
        B.write(st)
        log("ota", "firmware %s committed: rebooting to install it" % self.version)
        v = self.version
        self._clear()
        return 1, "committed %s: rebooting" % v, "reboot"


class Trial:
    """Confirms a firmware on trial once the link has been online for a few heartbeats."""

    def __init__(self, link):
        self.link = link
        self.since = None
        self.done = False
        log("ota", "firmware %s on trial (was %s)" % (VERSION, B.state.get("from") if B.state else "?"))

    def tick(self):
        if self.done:
            return
        link = self.link
        if link is None or not link.online:
            self.since = None
            return
        now = time.ticks_ms()
        if self.since is None:
            self.since = now
            return
        need = 3 * link.hb_ms
        if need < CONFIRM_MS:
            need = CONFIRM_MS
        if time.ticks_diff(now, self.since) >= need:
            self.done = True
            B.confirm()
