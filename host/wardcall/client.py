"""A client of the console API (wardcall.web): log in, read the state, follow the event stream,
send commands. Used by the tests and tools; the web console speaks the same HTTP from a browser.
Actions carry the session's request token (X-Wardcall-Token) and a JSON body, as the host asks."""
from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from typing import Any, AsyncIterator, Callable

import aiohttp

from .trust import client_context


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class WardApi:
    def __init__(self, base_url: str, ssl_context: "ssl.SSLContext | None" = None) -> None:
        self.base_url = base_url.rstrip("/")
        # https: the system's CAs and the ward CAs this process trusts (wardcall.trust)
        ctx = ssl_context or (client_context() if self.base_url.startswith("https:") else None)
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                          connector=aiohttp.TCPConnector(ssl=ctx) if ctx else None)
        self.user: str | None = None
        self.token = ""              # the session's request token, from the login

    async def __aenter__(self) -> "WardApi":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.close()

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        changing = method not in ("GET", "HEAD")
        headers = {"X-Wardcall-Token": self.token} if changing and self.token else {}
        async with self.http.request(method, self.base_url + path, json=body if body is not None or not changing else {},
                                     headers=headers) as reply:
            try:
                data = await reply.json(content_type=None)
            except (json.JSONDecodeError, aiohttp.ContentTypeError):
                data = {"error": await reply.text()}
            if reply.status >= 400:
                raise ApiError(reply.status, data.get("error", "") if isinstance(data, dict) else str(data))
            return data

    async def login(self, user: str, password: str) -> dict[str, Any]:
        reply = await self._call("POST", "/api/login", {"user": user, "password": password})
        self.user = user
        self.token = reply.get("token", "")
        return reply

    async def me(self) -> dict[str, Any]:
        return await self._call("GET", "/api/me")

    async def state(self) -> dict[str, Any]:
        return await self._call("GET", "/api/state")

    async def acknowledge(self, call_id: int) -> dict[str, Any]:
        return (await self._call("POST", f"/api/calls/{call_id}/acknowledge"))["call"]

    async def accept(self, call_id: int) -> dict[str, Any]:
        return (await self._call("POST", f"/api/calls/{call_id}/accept"))["call"]

    async def decline(self, call_id: int, reason: str = "") -> dict[str, Any]:
        return (await self._call("POST", f"/api/calls/{call_id}/decline", {"reason": reason}))["call"]

    async def pocket_heartbeat(self) -> dict[str, Any]:
        return await self._call("POST", "/api/pocket/heartbeat", {})

    async def silence(self, seconds: float) -> dict[str, Any]:
        return (await self._call("POST", "/api/silence", {"seconds": seconds}))["sound"]

    async def command(self, device: str, command: str, password: str | None = None) -> int:
        body: dict[str, Any] = {"command": command}
        if password is not None:
            body["password"] = password      # reboot asks for it again
        return (await self._call("POST", f"/api/terminals/{device}/command", body))["cmd_id"]

    async def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return await self._call("POST", path, body)

    async def get(self, path: str) -> Any:
        return await self._call("GET", path)

    def events(self, last_event_id: str | None = None) -> "EventStream":
        """The event stream; with `last_event_id` it asks to resume after that event."""
        return EventStream(self, last_event_id)


class CallViews:
    """Which `call` events to take, as the web consoles do (hostlink.js `newerCall`). A call the
    host sent ahead of a console's backlog (`ahead`, no id) comes again later in its place, and
    older views of it may come in between: only a view newer than the one taken is taken."""

    def __init__(self) -> None:
        self.ahead_seq: dict[int, int] = {}     # call id → seq of its ahead copy, until its place comes

    def take(self, payload: dict[str, Any]) -> bool:
        call_id, seq = payload["call"]["id"], payload["seq"]
        taken = self.ahead_seq.get(call_id)
        if payload.get("ahead"):
            if taken is not None and seq <= taken:
                return False
            self.ahead_seq[call_id] = seq
            return True
        if taken is None:
            return True
        if seq < taken:
            return False
        del self.ahead_seq[call_id]         # the ahead copy's own place in order: caught up
        return seq > taken


class EventStream:
    """The SSE stream, applied to a live copy of the ward state (`state`), plus every event in
    order (`events`). `async with api.events() as stream:` starts it after the snapshot."""

    def __init__(self, api: WardApi, last_event_id: str | None = None) -> None:
        self.api = api
        self.resume_from = last_event_id
        self.last_id: str | None = None      # the id of the latest event (to resume after it)
        self.state: dict[str, Any] = {}
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._call_views = CallViews()
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._response: aiohttp.ClientResponse | None = None
        self.ended = False

    async def __aenter__(self) -> "EventStream":
        headers = {"Last-Event-ID": self.resume_from} if self.resume_from else {}
        self._response = await self.api.http.get(self.api.base_url + "/api/events", headers=headers,
                                                 timeout=aiohttp.ClientTimeout(total=None, sock_read=None))
        if self._response.status != 200:
            text = await self._response.text()
            self._response.release()
            raise ApiError(self._response.status, text)
        self._task = asyncio.create_task(self._read())
        await self._wait(lambda: bool(self.events), timeout=5)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._response is not None:
            self._response.close()

    async def _read(self) -> None:
        assert self._response is not None
        try:
            async for event_id, name, data in sse_events(self._response.content):
                self.last_id = event_id
                self._apply(name, json.loads(data))
        finally:
            self.ended = True
            self._signal()

    def _signal(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _apply(self, name: str, payload: dict[str, Any]) -> None:
        self.events.append((name, payload))
        state = self.state
        if name == "snapshot":
            self.state = payload
            self._call_views = CallViews()
        elif name == "call":
            call = payload["call"]
            if not self._call_views.take(payload):
                return
            calls = [c for c in state.get("calls", []) if c["id"] != call["id"]]
            if call["state"] != "cleared":
                calls.append(call)
            state["calls"] = sorted(calls, key=lambda c: (c["priority"], c["placed_at"], c["id"]))
        elif name == "terminal":
            t = payload["terminal"]
            state["terminals"] = [t if x["device"] == t["device"] else x for x in state.get("terminals", [])]
        elif name == "room":
            r = payload["room"]
            state["rooms"] = [r if x["id"] == r["id"] else x for x in state.get("rooms", [])]
        elif name == "alarm":
            alarm = payload["alarm"]
            alarms = [a for a in state.get("alarms", []) if a["id"] != alarm["id"]]
            if payload["active"]:
                alarms.append(alarm)
            state["alarms"] = alarms
        elif name == "sound":
            state["sound"] = payload["sound"]
        elif name == "staff":
            entry = payload["staff"]
            state["staff"] = [entry if x["user"] == entry["user"] else x for x in state.get("staff", [])]
        elif name == "assignment":
            state["assignment"] = payload["assignment"]     # not in the snapshot: the latest one told
        elif name == "patient":                             # integrations (docs/INTEGRATION.md)
            patients = state.setdefault("patients", {})
            bed = f"{payload['room']}/{payload['bed']}"
            if payload["patient"] is None:
                patients.pop(bed, None)
            else:
                patients[bed] = payload["patient"]
        elif name == "alert_status":
            state.setdefault("alert_status", {})[str(payload["call"])] = payload
        if "seq" in payload:
            self.state["seq"] = payload["seq"]
        self._signal()

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
        """Wait until the live state satisfies predicate; returns the state."""
        return await self._wait(lambda: predicate(self.state) and self.state, timeout)

    async def wait_event(self, predicate: Callable[[str, dict[str, Any]], bool], timeout: float = 5.0, start: int = 0) -> dict[str, Any]:
        """Wait for an event (name, payload) from index `start` on; returns its payload."""
        def found() -> dict[str, Any] | None:
            for name, payload in self.events[start:]:
                if predicate(name, payload):
                    return payload
            return None
        return await self._wait(found, timeout)

    async def _wait(self, check: Callable[[], Any], timeout: float) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = check()
            if result:
                return result
            if self.ended:
                raise ConnectionError("the event stream ended")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"the ward did not reach the expected state within {timeout:g} s")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)


async def sse_lines(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The lines of a stream, without their ending (LF, CRLF or CR), however long: read in
    chunks and split here, because aiohttp's own line reader stops at 512 KiB — less than a
    large ward's snapshot (one data line, from about 2,000 terminals)."""
    parts: list[bytes] = []          # the line being read, in pieces (no copying per chunk)
    async for chunk in content.iter_any():
        if b"\n" not in chunk and b"\r" not in chunk:
            parts.append(chunk)
            continue
        parts.append(chunk)
        buf = b"".join(parts)
        if buf.endswith(b"\r"):
            parts = [buf]            # a CR may be the first half of a CRLF: wait for the rest
            continue
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, rest = buf.split(b"\n")
        parts = [rest] if rest else []
        for line in lines:
            yield line
    rest = b"".join(parts)
    if rest:
        for line in rest.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
            yield line


async def sse_messages(content: aiohttp.StreamReader) -> AsyncIterator[tuple[str, str]]:
    """Server-Sent Events as (event name, data), data lines joined with newlines; comments
    (keepalives) and fields other than `event` and `data` are skipped."""
    async for _, name, data in sse_events(content):
        yield name, data


async def sse_events(content: aiohttp.StreamReader) -> AsyncIterator[tuple[str | None, str, str]]:
    """Server-Sent Events as (last event id, event name, data), the id as EventSource keeps it
    (the latest `id:` field so far)."""
    event_id: str | None = None
    name, data = "message", []
    async for raw in sse_lines(content):
        line = raw.decode()
        if not line:
            if data:
                yield event_id, name, "\n".join(data)
            name, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("id:"):
            value = line[3:]
            event_id = value[1:] if value.startswith(" ") else value
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)


def find_call(state: dict[str, Any], device: str, call_id: int) -> dict[str, Any] | None:
    for call in state.get("calls", []):
        if call["device"] == device and call["call_id"] == call_id:
            return call
    return None


def find_terminal(state: dict[str, Any], device: str) -> dict[str, Any] | None:
    for terminal in state.get("terminals", []):
        if terminal["device"] == device:
            return terminal
    return None


def alarms_of(state: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [a for a in state.get("alarms", []) if a["kind"] == kind]
