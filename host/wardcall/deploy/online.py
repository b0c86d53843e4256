"""Confirm at the host that a terminal came online: poll GET /api/state as a console user, through
the one synchronous client of the host's API (wardcall.host_api.HostApi)."""
from __future__ import annotations

import time
from typing import Any, Callable

from ..host_api import HostApi, HostApiError
from .errors import DeployError

# wardcall.ward.model.Terminal.status: a terminal with a fault (a cord unplugged) is online too
ONLINE = ("online", "fault")


def terminal_status(state: Any, device: str) -> str | None:
    """The device's status in the host's state (docs/HOST.md "State": its "terminals" list of
    {"device", "status": online | fault | offline | unknown, ...}); None if the host does not
    know the device. A ValueError if the answer is not a wardcall host's state."""
    terminals = state.get("terminals") if isinstance(state, dict) else None
    if not isinstance(terminals, list):
        raise ValueError("the answer to GET /api/state has no list of terminals: is this a wardcall host?")
    for terminal in terminals:
        if isinstance(terminal, dict) and terminal.get("device") == device:
            return str(terminal.get("status"))
    return None


class StateReader:
    """GET /api/state, logged in as a console user (the host's API is for logged-in users only).
    Logs in again when the host no longer knows the session (it restarted)."""

    def __init__(self, api: HostApi) -> None:
        self.api = api

    def _login(self) -> None:
        api = self.api
        if api.password is None:
            raise DeployError("no password for the console user %r of the host at %s" % (api.user, api.url),
                              code="host-login", fix="set $WARDCALL_HOST_PASSWORD (or pass --no-wait)")
        try:
            api.login()
        except HostApiError as e:
            if e.status is None:
                raise              # not reachable (yet): the caller tries again
            if e.status == 401:
                raise DeployError("the host at %s refused the login of %r" % (api.url, api.user),
                                  code="host-login", fix="check --host-user and $WARDCALL_HOST_PASSWORD") from None
            raise DeployError("the host at %s refused the login of %r: %s" % (api.url, api.user, e),
                              code="host-login", fix="check --host-user and $WARDCALL_HOST_PASSWORD; "
                              "after too many failed logins, wait as the host says") from None

    def state(self, timeout: float = 5) -> Any:
        api = self.api
        if api.user and not api.logged_in:
            self._login()
        try:
            return api.get("/api/state", timeout)
        except HostApiError as e:
            if e.status != 401:
                raise
            if not api.user:
                raise DeployError("the host at %s wants a console login to show its state" % api.url,
                                  code="host-login",
                                  fix="pass --host-user USER and set $WARDCALL_HOST_PASSWORD, or --no-wait") from None
            api.logged_in = False
            self._login()
            return api.get("/api/state", timeout)


def wait_online(host_url: str, device: str, timeout: float = 30.0, interval: float = 0.5,
                port: str | None = None, user: str | None = None, password: str | None = None,
                clock: Callable[[], float] = time.monotonic,
                sleep: Callable[[float], None] = time.sleep) -> bool:
    """Block until the host lists `device` online (or online with a fault); a DeployError after
    `timeout` s, or at once if the host refuses the login."""
    deadline = clock() + timeout
    last = "no answer yet"
    reader = StateReader(HostApi(host_url, user, password))
    while True:
        try:
            status = terminal_status(reader.state(), device)
            if status in ONLINE:
                return True
            if status is None:
                last = "the host does not know %s" % device
            elif status == "unknown":
                last = "%s has never connected to the host" % device
            else:
                last = "the host lists %s as %s" % (device, status)
        except HostApiError as e:
            # not reachable: "the host at URL is not reachable (why); is `wardcall serve` running?"
            last = str(e) if e.status is None else "the host at %s answered %s" % (host_url, e)
        except ValueError as e:
            last = "host %s: %s" % (host_url, e)
        if clock() >= deadline:
            raise DeployError(
                "%s did not come online at %s within %.0f s: %s" % (device, host_url, timeout, last),
                code="not-online",
                port=port,
                fix="check that `wardcall serve` runs and knows %s, that the board reaches the host "
                "(Wi-Fi settings in config.json), and watch its console with `wardcall monitor "
                "--port %s`" % (device, port or "PORT"),
            )
        sleep(interval)
