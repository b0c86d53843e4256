"""HostApi: the host's HTTP API from the command line (`wardcall update`, `wardcall deploy`,
`wardcall status`): urllib, no event loop. It logs in as a console user, keeps the session cookie
and sends the session's request token and a JSON body with every action, as the host asks
(docs/HOST.md, "HTTP API"). The asyncio client for tests and tools is wardcall.client.WardApi."""
from __future__ import annotations

import http.cookiejar
import json
import urllib.error
import urllib.request
from typing import Any

from .trust import client_context


class HostApiError(Exception):
    """The host answered with an error (status set), or could not be reached (status None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class HostApi:
    error: type[Exception] = HostApiError      # what a subclass raises instead (its own kind of error)

    def __init__(self, url: str, user: str | None = None, password: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.user, self.password = user, password
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
                                                  urllib.request.HTTPSHandler(context=client_context()))
        self.token = ""          # the session's request token, from the login
        self.logged_in = False

    def _fail(self, message: str, status: int | None) -> Exception:
        exc = self.error(message)
        exc.status = status          # type: ignore[attr-defined]
        return exc

    def request(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        data = None
        headers: dict[str, str] = {}
        if method != "GET":
            data = json.dumps({} if body is None else body).encode()
            headers = {"Content-Type": "application/json", "X-Wardcall-Token": self.token}
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with self.opener.open(req, timeout=timeout) as reply:
                return json.loads(reply.read().decode())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read().decode()).get("error", "")
            except (ValueError, AttributeError):
                message = ""
            raise self._fail(f"{method} {path}: HTTP {exc.code} {message}".strip(), exc.code) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise self._fail(f"the host at {self.url} is not reachable ({getattr(exc, 'reason', exc)}); "
                             "is `wardcall serve` running?", None) from None

    def login(self) -> dict[str, Any]:
        me = self.request("POST", "/api/login", {"user": self.user, "password": self.password})
        self.token = me.get("token", "")
        self.logged_in = True
        return me

    def get(self, path: str, timeout: float = 30) -> Any:
        return self.request("GET", path, timeout=timeout)

    def post(self, path: str, body: Any = None, timeout: float = 30) -> Any:
        return self.request("POST", path, body, timeout=timeout)

    def health(self, timeout: float = 5) -> dict[str, Any]:
        return self.get("/api/health", timeout)
