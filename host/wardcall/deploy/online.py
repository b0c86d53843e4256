"""Confirm at the host that a terminal came online: poll GET <host>/api/state."""
import json
import time
import urllib.error
import urllib.request

from .errors import DeployError


def _terminals(state):
    """The terminal records in /api/state, whatever the exact shape (list or dict by id)."""
    if isinstance(state, dict):
        for key in ("terminals", "devices", "beds"):
            if key in state:
                t = state[key]
                if isinstance(t, dict):
                    return [dict(v, device_id=v.get("device_id", k)) if isinstance(v, dict) else
                            {"device_id": k, "online": bool(v)} for k, v in t.items()]
                return list(t)
    if isinstance(state, list):
        return state
    return []


def terminal_status(state, device):
    """True if online, False if known and offline, None if the host does not know it."""
    for t in _terminals(state):
        ident = t.get("device") or t.get("device_id") or t.get("id")
        if ident == device:
            if "online" in t:
                return bool(t["online"])
            # wardcall.ward: online | fault (online, with a fault) | offline | unknown
            return str(t.get("status", "")).lower() in ("online", "fault")
    return None


class HostSession:
    """GET /api/state, logging in first (POST /api/login, session cookie) when credentials are
    given: the host's API is for logged-in console users only."""

    def __init__(self, host_url, user=None, password=None):
        import http.cookiejar
        self.url = host_url.rstrip("/")
        self.user, self.password = user, password
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self.logged_in = False

    def login(self, timeout=10):
        body = json.dumps({"user": self.user, "password": self.password}).encode()
        req = urllib.request.Request(self.url + "/api/login", data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            self.opener.open(req, timeout=timeout).close()
        except urllib.error.HTTPError as e:
            if e.code == 401:
                raise DeployError("the host at %s refused the login of %r" % (self.url, self.user),
                                  code="host-login",
                                  fix="check --host-user and $WARDCALL_HOST_PASSWORD")
            raise
        self.logged_in = True

    def state(self, timeout=5):
        if self.user and not self.logged_in:
            self.login()
        try:
            with self.opener.open(self.url + "/api/state", timeout=timeout) as r:
                return json.loads(r.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            if e.code != 401:
                raise
            if not self.user:
                raise DeployError(
                    "the host at %s wants a console login to show its state" % self.url,
                    code="host-login",
                    fix="pass --host-user USER and set $WARDCALL_HOST_PASSWORD, or --no-wait")
            self.logged_in = False
            self.login()
            with self.opener.open(self.url + "/api/state", timeout=timeout) as r:
                return json.loads(r.read().decode("utf-8"))


def fetch_state(host_url, timeout=5, user=None, password=None):
    return HostSession(host_url, user, password).state(timeout)


def wait_online(host_url, device, timeout=30.0, interval=0.5, port=None, user=None, password=None):
    """Block until the host lists `device` online, or raise a DeployError after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    session = HostSession(host_url, user, password)
    while True:
        try:
            status = terminal_status(session.state(), device)
            if status:
                return True
            last = ("the host does not know %s" % device if status is None
                    else "the host lists %s as offline" % device)
        except (urllib.error.URLError, OSError, ValueError) as e:
            last = "host %s not reachable (%s)" % (host_url, getattr(e, "reason", e))
        if time.monotonic() >= deadline:
            raise DeployError(
                "%s did not come online at %s within %.0f s: %s" % (device, host_url, timeout, last),
                code="not-online",
                port=port,
                fix="check that `wardcall serve` runs and knows %s, that the board reaches the host "
                "(Wi-Fi settings in config.json), and watch its console with `wardcall monitor "
                "--port %s`" % (device, port or "PORT"),
            )
        time.sleep(interval)
