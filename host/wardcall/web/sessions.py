"""Console sessions: who is logged in on which browser.

A login gets a random token (the HttpOnly cookie) and a second random value, the request token,
that the console sends back in a header with every action (a page of another origin can make the
browser send the cookie, but cannot read the request token). The host keeps only the SHA-256 of
the cookie token, in memory and in `<database stem>.sessions.json` (mode 0600) next to the record,
so consoles stay logged in across a host restart and the file never holds a usable cookie.

A session ends when its user logs out, after `idle_s` without a request or an open event stream,
after `lifetime_s` in any case, or when an administrator ends all sessions of its user.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

log = logging.getLogger("wardcall.web")

TOUCH_SAVE_S = 60.0      # last activity is written to disk at most this often per session


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class ConsoleSession:
    id: str              # the SHA-256 of the cookie token
    user: str
    name: str
    csrf: str            # the request token the console sends in X-Wardcall-Token
    created: float       # wall
    expires: float       # wall: the absolute end
    last: float          # wall: the latest request or open event stream
    saved_last: float = 0.0


class Sessions:
    def __init__(self, path: Path | None, idle_s: float, lifetime_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.idle_s = idle_s
        self.lifetime_s = lifetime_s
        self.clock = clock
        self.by_id: dict[str, ConsoleSession] = {}
        self._load()

    # ----- the hashed copy on disk -----

    def _load(self) -> None:
        if self.path is None:
            return
        try:
            data = json.loads(self.path.read_text())
            now = self.clock()
            for sid, entry in data.get("sessions", {}).items():
                session = ConsoleSession(**{k: entry[k] for k in ("id", "user", "name", "csrf", "created", "expires", "last")})
                if session.id == sid and self._alive(session, now):
                    session.saved_last = session.last
                    self.by_id[sid] = session
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError, KeyError, TypeError) as exc:
            log.warning("%s: unreadable (%s); consoles will log in again", self.path, exc)

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"sessions": {sid: {k: v for k, v in asdict(s).items() if k != "saved_last"}
                                        for sid, s in self.by_id.items()}}, f)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("cannot keep console sessions in %s: %s", self.path, exc)

    # ----- sessions -----

    def _alive(self, session: ConsoleSession, now: float) -> bool:
        return now < session.expires and now - session.last < self.idle_s

    def create(self, user: str, name: str) -> tuple[str, ConsoleSession]:
        """A new session: (cookie token, session). The token itself is never stored."""
        now = self.clock()
        token = secrets.token_urlsafe(32)
        session = ConsoleSession(digest(token), user, name, secrets.token_urlsafe(24), now,
                                 now + self.lifetime_s, now, now)
        self._prune(now)
        self.by_id[session.id] = session
        self._save()
        return token, session

    def get(self, token: str) -> ConsoleSession | None:
        """The live session of a cookie token, or None (unknown, idle too long or expired)."""
        if not token:
            return None
        return self.get_by_id(digest(token))

    def get_by_id(self, sid: str) -> ConsoleSession | None:
        session = self.by_id.get(sid)
        if session is None:
            return None
        if not self._alive(session, self.clock()):
            self.end_id(sid)
            return None
        return session

    def touch(self, session: ConsoleSession) -> None:
        """The session is in use (a request, or an open event stream)."""
        now = self.clock()
        session.last = now
        if now - session.saved_last >= TOUCH_SAVE_S and session.id in self.by_id:
            session.saved_last = now
            self._save()

    def end_id(self, sid: str) -> ConsoleSession | None:
        session = self.by_id.pop(sid, None)
        if session is not None:
            self._save()
        return session

    def end_user(self, user: str) -> list[ConsoleSession]:
        """End every session of one user; returns them."""
        ended = [s for s in self.by_id.values() if s.user == user]
        for s in ended:
            del self.by_id[s.id]
        if ended:
            self._save()
        return ended

    def _prune(self, now: float) -> None:
        for sid in [sid for sid, s in self.by_id.items() if not self._alive(s, now)]:
            del self.by_id[sid]

    def expired(self) -> list[ConsoleSession]:
        """Take out the sessions that have run out (for their event streams to be ended)."""
        now = self.clock()
        gone = [s for s in self.by_id.values() if not self._alive(s, now)]
        for s in gone:
            del self.by_id[s.id]
        if gone:
            self._save()
        return gone
