# Over-the-air update, the receiving half (docs/PROTOCOL.md section 12; the wire rules are in
# otaproto). BEGIN carries the signed statement's fields and the signature, checked with the
# ward's public key (KEY_FILE, installed by `wardcall deploy`) by the boot chain's otacheck before
# anything is written: a slice of that check with each OTA command, so that no call waits for the
# whole of it. Every file is declared, and the declarations must hash to the signed manifest
# digest, before the first chunk is taken; each file is checked for size and SHA-256 as it
# completes. COMMIT writes .ota/state.json "pending" and reboots; boot.py (otaboot.boot) checks it
# all again and swaps the files in for a trial. Loaded only when the host sends an OTA command,
# and released (otacmd.py) when no update is in progress, so it costs no heap otherwise. This
# module may itself be updated: the checks that matter are repeated by the boot chain (never
# updated), and a new firmware that does not confirm is rolled back.
#
# Heap (docs/FIRMWARE.md, Memory): whatever the number of files, a transfer keeps the same few
# objects alive. The declarations go to flash as they come (.ota/manifest: the signed manifest's
# exact lines), not into a list; only the file being received is held (path, size, SHA-256
# digest); chunks are written and hashed from a view of the command's argument; the state COMMIT
# writes is streamed to the flash, never built as one string.
from micropython import const
import os
import gc
import json
import hashlib
from binascii import hexlify, unhexlify

import otaboot as B
import otacheck as C
import otaproto as O
from log import log
from version import VERSION            # the version an update replaces (the state's "from")
from wardproto import (CMD_OTA_BEGIN, CMD_OTA_FILE, CMD_OTA_CHUNK, CMD_OTA_COMMIT, CMD_OTA_ABORT,
                       CMD_OTA_STATUS)

_CHECK_STEPS = const(2)        # slices of the signature check per command (17 in all)
_MANIFEST = ".ota/manifest"    # the declarations so far; gone once committed or discarded
_EMPTY_SHA = hashlib.sha256(b"").digest()


def free_bytes():
    try:
        st = os.statvfs("/")
        return st[0] * st[4]
    except (OSError, AttributeError):
        return None


def _declared(path, twin):
    """Is path, or its twin, declared already (a line of _MANIFEST)?"""
    with open(_MANIFEST) as f:
        for line in f:
            p = line[:line.find(" ")]
            if p == path or p == twin:
                return True
    return False


class Receiver:
    def __init__(self, outbox=None):
        self.outbox = outbox        # its undelivered events make a commit wait
        self._clear()

    def _clear(self):
        self.id = None
        self.hdr = None             # the BEGIN header
        self.sig = b""
        self.check = None           # otacheck.SignatureCheck of the BEGIN's signature
        self.nd = 0                 # files declared (their lines are in _MANIFEST)
        self.total = 0              # their sizes
        self.decl = None            # SHA-256 of the declarations so far (the manifest digest)
        self.verified = False       # signature good, every file declared, the manifest digest matched
        self.cur = 0                # the file being received
        self.off = 0                # bytes of it written and hashed
        self.h = None
        self.path = None            # the file being received: path, size, SHA-256 digest
        self.size = 0
        self.sha = None

    def busy(self):
        """An update is in progress (BEGIN taken, not committed nor discarded)."""
        return self.id is not None

    def _discard(self):
        B.rmtree(B.NEW)
        B.remove(_MANIFEST)
        self._clear()

    def handle(self, cmd, arg):
        """(ok, detail, after) as commands.Commands.handle; detail is an otaproto RESULT."""
        try:
            if cmd == CMD_OTA_BEGIN:
                return self._begin(arg)
            if cmd == CMD_OTA_FILE:
                self._advance()
                return self._file(arg)
            if cmd == CMD_OTA_CHUNK:
                self._advance()
                return self._chunk(arg)
            if cmd == CMD_OTA_COMMIT:
                return self._commit()
            if cmd == CMD_OTA_ABORT:
                if self.id is not None:
                    log("ota", "update %s aborted by the host" % self.hdr["v"])
                self._discard()
                return 1, O.result(O.R_ABORTED), None
            if cmd == CMD_OTA_STATUS:
                from otacmd import status
                return 1, status(self.rx()), None
            raise O.Refused(O.R_UNSUPPORTED, {"cmd": cmd})
        except O.Refused as r:
            return 0, r.detail(), None
        except OSError as e:
            log("ota", "flash error: %r" % (e,))
            return 0, O.result(O.R_FLASH, {"m": repr(e)}), None

    def _advance(self):
        """The next slices of the signature check; a signature that fails discards the update."""
        check = self.check
        if check is None or check.ok:
            return
        for _ in range(_CHECK_STEPS):
            check.step()
            if check.ok is not None:
                break
        if check.ok is False:
            log("ota", "firmware %s refused: its signature does not verify" % self.hdr["v"])
            self._discard()
            raise O.Refused(O.R_BAD_SIGNATURE)
        if check.ok:
            log("ota", "firmware %s: signature verified" % self.hdr["v"])
            self._ready()

    def _ready(self):
        """Once the signature is good and the whole manifest declared: chunks may come."""
        if self.verified or not self.check.ok or self.nd < self.hdr["n"]:
            return
        self.verified = True
        B.makedirs(B.NEW + "lib")
        self._next_file()

    def rx(self):
        """[declared, file, offset] of the transfer in progress, None without one (for STATUS)."""
        return [self.nd, self.cur, self.off] if self.id is not None else None

    def _at(self):
        # the answer to nearly every command: formatted here rather than through a dict
        return 1, '{"c": "%s", "d": %d, "f": %d, "o": %d, "sig": "%s"}' % (
            O.R_AT, self.nd, self.cur, self.off, "ok" if self.check.ok else "checking"), None

    def _begin(self, arg):
        hdr, sig = O.decode_begin(arg)
        if B.in_trial():
            raise O.Refused(O.R_BUSY_TRIAL, {"v": B.state.get("v", "")})
        stmt = O.begin_statement(hdr)
        pid = O.package_id(stmt)
        if pid == self.id:
            # the same package (its id is the signed statement's hash): the check of the signature
            # first received goes on, and decides; no second check is built, which would take
            # heap when a resumed transfer, just after a new TLS session, has least of it
            log("ota", "resuming update %s at file %d offset %d" % (hdr["v"], self.cur, self.off))
            self.hdr["trial_s"] = hdr["trial_s"]
            self._advance()
            return self._at()
        check = C.SignatureCheck(hdr["kid"], stmt, sig)      # refuses at once without the ward's key
        installed = C.installed_serial()
        if hdr["serial"] <= installed:
            log("ota", "refused firmware %s: serial %d, installed %d" % (hdr["v"], hdr["serial"], installed))
            raise O.Refused(O.R_DOWNGRADE, {"serial": hdr["serial"], "installed": installed})
        self._discard()
        free = free_bytes()
        if free is not None and hdr["size"] + O.RESERVE > free:
            raise O.Refused(O.R_NO_SPACE, {"need": hdr["size"] + O.RESERVE, "free": free})
        B.makedirs(".ota")
        with open(_MANIFEST, "w"):
            pass
        gc.collect()            # the key's parsing left garbage: free it before the transfer starts
        self.id, self.hdr, self.sig, self.check = pid, hdr, sig, check
        self.decl = hashlib.sha256()
        log("ota", "receiving firmware %s (serial %d, %d file(s), %d bytes): checking its signature"
            % (hdr["v"], hdr["serial"], hdr["n"], hdr["size"]))
        self._advance()
        return self._at()

    def _line(self, i):
        with open(_MANIFEST, "rb") as f:
            for n, line in enumerate(f):
                if n == i:
                    return line
        return b""

    def _file(self, arg):
        if self.id is None:
            raise O.Refused(O.R_NOT_STARTED)
        i, path, size, sha = O.decode_file(arg)
        line = O.entry_line(path, size, sha)
        if i < self.nd:
            if self._line(i) != line:
                raise O.Refused(O.R_BAD_REQUEST, {"m": "file %d declared differently before" % i})
            return self._at()                             # a resumed transfer, or waiting for the check
        if i != self.nd or i >= self.hdr["n"]:
            raise O.Refused(O.R_ORDER, {"d": self.nd, "f": self.cur, "o": self.off})
        if _declared(path, O.twin(path)):
            raise O.Refused(O.R_BAD_REQUEST, {"m": "file %s twice" % path})
        if self.total + size > self.hdr["size"]:
            raise O.Refused(O.R_TOO_BIG, {"m": "files exceed the declared size"})
        with open(_MANIFEST, "ab") as f:
            f.write(line)
        self.nd += 1
        self.total += size
        self.decl.update(line)
        if self.nd < self.hdr["n"]:
            return self._at()
        if O.hexstr(self.decl.digest()) != self.hdr["m"] or self.total != self.hdr["size"]:
            log("ota", "firmware %s refused: the declared files are not the signed manifest" % self.hdr["v"])
            self._discard()
            raise O.Refused(O.R_MANIFEST)
        self._ready()
        return self._at()

    def _next_file(self):
        """Load the entry of file self.cur (if any is left); empty files are complete as soon as
        they are declared and verified."""
        while self.cur < self.nd:
            p = self._line(self.cur).split()
            self.path, self.size, self.sha = p[0].decode(), int(p[1]), unhexlify(p[2])
            if self.size:
                return
            B.makedirs(B.NEW + self.path[:self.path.rfind("/")])
            with open(B.NEW + self.path, "wb"):
                pass
            if self.sha != _EMPTY_SHA:
                self._hash_mismatch(self.path)
            self.cur += 1
        self.path, self.sha = None, None

    def _hash_mismatch(self, path):
        log("ota", "%s refused: its SHA-256 is not the signed one; update %s discarded" % (path, self.hdr["v"]))
        self._discard()
        raise O.Refused(O.R_HASH, {"path": path})

    def _chunk(self, arg):
        if self.id is None:
            raise O.Refused(O.R_NOT_STARTED)
        if self.nd < self.hdr["n"]:
            raise O.Refused(O.R_UNDECLARED, {"d": self.nd, "n": self.hdr["n"]})
        if not self.verified:
            raise O.Refused(O.R_CHECKING)
        i, off, data = O.decode_chunk(arg)
        n = len(data)
        if i < self.cur or (i == self.cur and off + n <= self.off and n):
            return self._at()                             # a chunk seen before (resent)
        if i != self.cur or i >= self.nd or off != self.off:
            raise O.Refused(O.R_ORDER, {"d": self.nd, "f": self.cur, "o": self.off})
        path = self.path
        if off + n > self.size:
            raise O.Refused(O.R_TOO_BIG, {"m": "chunk past the end of %s" % path})
        if off == 0:
            B.makedirs(B.NEW + path[:path.rfind("/")])
            self.h = hashlib.sha256()
        with open(B.NEW + path, "wb" if off == 0 else "ab") as f:
            f.write(data)
        self.h.update(data)
        self.off += n
        if self.off == self.size:
            got = self.h.digest()
            self.h = None
            if got != self.sha:
                self._hash_mismatch(path)
            self.cur += 1
            self.off = 0
            self._next_file()
        return self._at()

    def _commit(self):
        if self.id is None:
            raise O.Refused(O.R_NOT_STARTED)
        if not self.verified or self.cur != self.nd:
            raise O.Refused(O.R_INCOMPLETE, {"f": self.cur, "n": self.hdr["n"]})
        if self.outbox is not None and len(self.outbox):
            raise O.Refused(O.R_BUSY_CALLS, {"n": len(self.outbox)})
        hdr = self.hdr
        gc.collect()
        self._write_pending(hdr)
        log("ota", "firmware %s committed: rebooting to install it" % hdr["v"])
        v = hdr["v"]
        self._clear()
        return 1, O.result(O.R_COMMITTED, {"v": v}), "reboot"

    def _write_pending(self, hdr):
        """.ota/state.json "pending" (otaboot's format: the statement's fields, the signature in
        hex and "files": [[path, size, sha], ...]) streamed to the flash a file entry at a time,
        atomically (a temporary file, then rename) like otaboot's own writes."""
        head = json.dumps({"s": "pending", "v": hdr["v"], "from": VERSION, "serial": hdr["serial"], "n": hdr["n"],
                           "size": hdr["size"], "m": hdr["m"], "kid": hdr["kid"],
                           "trial_ms": hdr["trial_s"] * 1000})
        tmp = B.STATE + ".tmp"
        with open(tmp, "w") as f:
            f.write(head[:-1])                  # without its closing brace
            f.write(', "sig": "')
            f.write(hexlify(self.sig).decode())
            f.write('", "files": [')
            with open(_MANIFEST) as m:
                sep = ""
                for line in m:
                    e = line.split()        # path size sha: checked by otaproto as declared
                    f.write('%s["%s", %s, "%s"]' % (sep, e[0], e[1], e[2]))
                    sep = ", "
            f.write("]}")
        try:
            os.rename(tmp, B.STATE)
        except OSError:
            B.remove(B.STATE)
            os.rename(tmp, B.STATE)
        B.remove(_MANIFEST)
