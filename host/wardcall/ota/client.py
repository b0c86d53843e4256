"""UpdateClient: the server's update API over HTTP, as `wardcall update` uses it."""
from __future__ import annotations

import http.cookiejar
import json
import urllib.error
import urllib.request
from typing import Any

from .errors import OtaError
from .package import Package


class UpdateClient:
    """Logged in as a console user; urllib, no event loop."""

    def __init__(self, url: str, user: str | None, password: str | None) -> None:
        self.url = url.rstrip("/")
        self.user, self.password = user, password
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self.token = ""          # the session's request token, sent with every action

    def _request(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "X-Wardcall-Token": self.token} if data else {}
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with self.opener.open(req, timeout=timeout) as reply:
                return json.loads(reply.read().decode())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read().decode()).get("error", "")
            except (ValueError, AttributeError):
                message = ""
            error = OtaError(f"{method} {path}: HTTP {exc.code} {message}".strip())
            error.status = exc.code
            raise error from None
        except (urllib.error.URLError, OSError) as exc:
            raise OtaError(f"the host at {self.url} is not reachable ({getattr(exc, 'reason', exc)}); "
                           "is `wardcall serve` running?") from None

    def login(self) -> None:
        if not self.user or self.password is None:
            raise OtaError("the update runs through the host's API: pass --host-user USER (or set "
                           "$WARDCALL_HOST_USER) and set $WARDCALL_HOST_PASSWORD")
        self.token = self._request("POST", "/api/login", {"user": self.user, "password": self.password}).get("token", "")

    def start(self, package: Package, devices: list[str] | None, trial_s: int, parallel: int,
              keep_going: bool, force: bool, allow_downgrade: bool = False) -> dict[str, Any]:
        body = {"package": package.to_json(), "devices": devices, "trial_s": trial_s, "parallel": parallel,
                "keep_going": keep_going, "force": force}
        if allow_downgrade:
            body["allow_downgrade"] = True
        return self.post_update(body)

    def post_update(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /api/ota/updates with this body (start() builds it from a Package); an update
        asks for the password again."""
        return self._request("POST", "/api/ota/updates", {**body, "password": self.password}, timeout=120)

    def jobs(self) -> list[dict[str, Any]]:
        return self._request("GET", "/api/ota/updates")

    def job(self, job_id: int) -> dict[str, Any]:
        return self._request("GET", f"/api/ota/updates/{job_id}")
