# Over-the-air update, the receiving half (docs/PROTOCOL.md section 12; the wire rules are in
# otaproto). BEGIN carries the signed statement's fields and the signature, checked with the
# ward's public key (KEY_FILE, installed by `wardcall deploy`) by the boot chain's otacheck before
# anything is written: a slice of that check with each OTA command, so that no call waits for the
# whole of it. Every file is declared, and the declarations must hash to the signed manifest
# digest, before the first chunk is taken; each file is checked for size and SHA-256 as it
# completes. COMMIT writes .ota/state.json "pending" and reboots; boot.py (otaboot.boot) checks it
# all again and swaps the files in for a trial. Loaded only when the host sends an OTA command, so
# it costs no heap otherwise. This module may itself be updated: the checks that matter are
# repeated by the boot chain (never updated), and a new firmware that does not confirm is rolled
# back.
from micropython import const
import os
import hashlib

import otaboot as B
import otacheck as C
import otaproto as O
from log import log
from version import VERSION
from wardproto import (CMD_OTA_BEGIN, CMD_OTA_FILE, CMD_OTA_CHUNK, CMD_OTA_COMMIT, CMD_OTA_ABORT,
                       CMD_OTA_STATUS)

_WHY_MAX = const(120)
_CHECK_STEPS = const(2)        # slices of the signature check per command (17 in all)


def free_bytes():
    try:
        st = os.statvfs("/")
        return st[0] * st[4]
    except (OSError, AttributeError):
        return None


def _ascii(text, limit):
    return "".join([c for c in text[:limit] if 32 <= ord(c) < 127 and c != '"' and c != "\\"])


class Receiver:
    def __init__(self, outbox=None):
        self.outbox = outbox        # its undelivered events make a commit wait
        self._clear()

    def _clear(self):
        self.id = None
        self.hdr = None             # the BEGIN header
        self.sig = b""
        self.check = None           # otacheck.SignatureCheck of the BEGIN's signature
        self.files = []             # declared: [path, size, sha256 hex]
        self.decl = None            # SHA-256 of the declarations so far (the manifest digest)
        self.verified = False       # signature good, every file declared, the manifest digest matched
        self.cur = 0                # the file being received
        self.off = 0                # bytes of it written and hashed
        self.h = None

    def _discard(self):
        B.rmtree(B.NEW)
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
                return 1, self.status(), None
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
        if self.verified or not self.check.ok or len(self.files) < self.hdr["n"]:
            return
        self.verified = True
        B.makedirs(B.NEW + "lib")
        self._skip_empty()

    def status(self):
        st = B.read()
        d = {"s": st.get("s", "idle"), "v": st.get("v", ""), "from": st.get("from", ""), "run": VERSION,
             "serial": C.installed_serial(), "key": C.key_state()}
        if self.id is not None:
            d["rx"] = [len(self.files), self.cur, self.off]
        why = st.get("why", "")
        if why:
            d["why"] = _ascii(why, _WHY_MAX)
        return O.result(O.R_STATUS, d)

    def _at(self):
        return 1, O.result(O.R_AT, {"d": len(self.files), "f": self.cur, "o": self.off,
                                    "sig": "ok" if self.check.ok else "checking"}), None

    def _begin(self, arg):
        hdr, sig = O.decode_begin(arg)
        if B.in_trial():
            raise O.Refused(O.R_BUSY_TRIAL, {"v": B.state.get("v", "")})
        stmt = O.begin_statement(hdr)
        check = C.SignatureCheck(hdr["kid"], stmt, sig)
        installed = C.installed_serial()
        if hdr["serial"] <= installed:
            log("ota", "refused firmware %s: serial %d, installed %d" % (hdr["v"], hdr["serial"], installed))
            raise O.Refused(O.R_DOWNGRADE, {"serial": hdr["serial"], "installed": installed})
        pid = O.package_id(stmt)
        if pid == self.id:
            log("ota", "resuming update %s at file %d offset %d" % (hdr["v"], self.cur, self.off))
            self.hdr["trial_s"] = hdr["trial_s"]
            self._advance()
            return self._at()
        self._discard()
        free = free_bytes()
        if free is not None and hdr["size"] + O.RESERVE > free:
            raise O.Refused(O.R_NO_SPACE, {"need": hdr["size"] + O.RESERVE, "free": free})
        self.id, self.hdr, self.sig, self.check = pid, hdr, sig, check
        self.decl = hashlib.sha256()
        log("ota", "receiving firmware %s (serial %d, %d file(s), %d bytes): checking its signature"
            % (hdr["v"], hdr["serial"], hdr["n"], hdr["size"]))
        self._advance()
        return self._at()

    def _file(self, arg):
        if self.id is None:
            raise O.Refused(O.R_NOT_STARTED)
        i, path, size, sha = O.decode_file(arg)
        if i < len(self.files):
            if self.files[i] != [path, size, sha]:
                raise O.Refused(O.R_BAD_REQUEST, {"m": "file %d declared differently before" % i})
            return self._at()                             # a resumed transfer, or waiting for the check
        if i != len(self.files) or i >= self.hdr["n"]:
            raise O.Refused(O.R_ORDER, {"d": len(self.files), "f": self.cur, "o": self.off})
        for f in self.files:
            if f[0] == path or f[0] == O.twin(path):
                raise O.Refused(O.R_BAD_REQUEST, {"m": "file %s twice" % path})
        total = size
        for f in self.files:
            total += f[1]
        if total > self.hdr["size"]:
            raise O.Refused(O.R_TOO_BIG, {"m": "files exceed the declared size"})
        self.files.append([path, size, sha])
        self.decl.update(O.entry_line(path, size, sha))
        if len(self.files) < self.hdr["n"]:
            return self._at()
        if O.hexstr(self.decl.digest()) != self.hdr["m"] or total != self.hdr["size"]:
            log("ota", "firmware %s refused: the declared files are not the signed manifest" % self.hdr["v"])
            self._discard()
            raise O.Refused(O.R_MANIFEST)
        self._ready()
        return self._at()

    def _skip_empty(self):
        """Empty files are complete as soon as they are declared and verified."""
        while self.cur < len(self.files) and self.files[self.cur][1] == 0:
            path = self.files[self.cur][0]
            B.makedirs(B.NEW + path[:path.rfind("/")])
            with open(B.NEW + path, "wb"):
                pass
            if self.files[self.cur][2] != O.hexstr(hashlib.sha256(b"").digest()):
                self._hash_mismatch(path)
            self.cur += 1

    def _hash_mismatch(self, path):
        log("ota", "%s refused: its SHA-256 is not the signed one; update %s discarded" % (path, self.hdr["v"]))
        self._discard()
        raise O.Refused(O.R_HASH, {"path": path})

    def _chunk(self, arg):
        if self.id is None:
            raise O.Refused(O.R_NOT_STARTED)
        if len(self.files) < self.hdr["n"]:
            raise O.Refused(O.R_UNDECLARED, {"d": len(self.files), "n": self.hdr["n"]})
        if not self.verified:
            raise O.Refused(O.R_CHECKING)
        i, off, data = O.decode_chunk(arg)
        n = len(data)
        if i < self.cur or (i == self.cur and off + n <= self.off and n):
            return self._at()                             # a chunk seen before (resent)
        if i != self.cur or i >= len(self.files) or off != self.off:
            raise O.Refused(O.R_ORDER, {"d": len(self.files), "f": self.cur, "o": self.off})
        path, size, sha = self.files[i]
        if off + n > size:
            raise O.Refused(O.R_TOO_BIG, {"m": "chunk past the end of %s" % path})
        if off == 0:
            B.makedirs(B.NEW + path[:path.rfind("/")])
            self.h = hashlib.sha256()
        with open(B.NEW + path, "wb" if off == 0 else "ab") as f:
            f.write(data)
        self.h.update(data)
        self.off += n
        if self.off == size:
            got = O.hexstr(self.h.digest())
            self.h = None
            if got != sha:
                self._hash_mismatch(path)
            self.cur += 1
            self.off = 0
            self._skip_empty()
        return self._at()

    def _commit(self):
        if self.id is None:
            raise O.Refused(O.R_NOT_STARTED)
        if not self.verified or self.cur != len(self.files):
            raise O.Refused(O.R_INCOMPLETE, {"f": self.cur, "n": self.hdr["n"]})
        if self.outbox is not None and len(self.outbox):
            raise O.Refused(O.R_BUSY_CALLS, {"n": len(self.outbox)})
        hdr = self.hdr
        B.write({"s": "pending", "v": hdr["v"], "from": VERSION, "serial": hdr["serial"], "n": hdr["n"],
                 "size": hdr["size"], "m": hdr["m"], "kid": hdr["kid"], "sig": O.hexstr(self.sig),
                 "files": self.files, "trial_ms": hdr["trial_s"] * 1000})
        log("ota", "firmware %s committed: rebooting to install it" % hdr["v"])
        v = hdr["v"]
        self._clear()
        return 1, O.result(O.R_COMMITTED, {"v": v}), "reboot"
