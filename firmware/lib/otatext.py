# otatext: the over-the-air update's RESULT details as text for people (docs/PROTOCOL.md section
# 12.3): parse_result() and describe(), with a sentence for every otaproto R_* code. Shared by the
# host (CPython, loaded by wardcall.protocol) and the terminals (MicroPython) like otaproto, whose
# parse_result() and describe() are these. A module of its own so that a terminal receiving an
# update never holds the sentences in its heap: it needs them only when its boot check refuses a
# staged update (otacheck, at boot). Part of the boot chain for that reason (otaproto.PROTECTED).
import json

import otaproto as O


def parse_result(text):
    """The detail as a dict with at least "c"; text that is not a detail gives R_TEXT."""
    try:
        d = json.loads(text)
    except ValueError:
        d = None
    if not isinstance(d, dict) or not isinstance(d.get("c"), str):
        return {"c": O.R_TEXT, "m": text}
    return d


_SENTENCES = {
    O.R_AT: "continue at file %(f)s offset %(o)s (%(d)s file(s) declared)",
    O.R_COMMITTED: "committed %(v)s: rebooting",
    O.R_ABORTED: "aborted",
    O.R_STATUS: "update state %(s)s",
    O.R_BAD_REQUEST: "bad request: %(m)s",
    O.R_CHECKING: "the signature is still being checked: declare the last file again",
    O.R_UNSIGNED: "the update is not signed: only updates signed with the ward key are installed",
    O.R_NO_KEY: "no update key installed: deploy it",
    O.R_BAD_KEY: "the installed update key is unreadable: deploy it again",
    O.R_WRONG_KEY: "signed with another key (%(kid)s); this terminal trusts key %(have)s",
    O.R_BAD_SIGNATURE: "the signature does not verify: changed after signing or not signed with the ward key",
    O.R_DOWNGRADE: "downgrade refused: serial %(serial)s is not newer than the installed serial %(installed)s",
    O.R_BUSY_TRIAL: "busy: firmware %(v)s is still on trial",
    O.R_NO_SPACE: "not enough flash: %(need)s bytes needed, %(free)s free",
    O.R_PATH: "path %(path)s may not be updated over the air",
    O.R_ORDER: "expected file %(f)s offset %(o)s (%(d)s file(s) declared)",
    O.R_UNDECLARED: "every file must be declared before the first chunk (%(d)s of %(n)s declared)",
    O.R_MANIFEST: "the declared files do not match the signed manifest",
    O.R_HASH: "hash mismatch: %(path)s",
    O.R_TOO_BIG: "too big: %(m)s",
    O.R_NOT_STARTED: "no update in progress",
    O.R_INCOMPLETE: "incomplete: %(f)s of %(n)s file(s)",
    O.R_BUSY_CALLS: "busy: %(n)s call event(s) not yet delivered",
    O.R_FLASH: "flash error: %(m)s",
    O.R_UNSUPPORTED: "unsupported command %(cmd)s",
    O.R_NO_MEMORY: "the terminal ran out of memory: it dropped the update to keep its calls going",
    O.R_TEXT: "%(m)s",
}


_FIELDS = ("f", "o", "d", "n", "v", "s", "m", "kid", "have", "serial", "installed", "need", "free",
           "path", "cmd")


def describe(d):
    """A sentence for an operator from a parsed detail."""
    form = _SENTENCES.get(d.get("c"))
    if form is None:
        return "unknown answer %s" % json.dumps(d)
    args = {}
    for k in _FIELDS:           # a missing field reads "?": never fails on a short detail
        v = d.get(k)
        args[k] = "?" if v is None else v
    return form % args
