"""Garbage on the console's HTTP API and its event stream (SSE): every answer is a 4xx (never a
5xx or a traceback), nothing is changed without a login, and a real console and real terminals
carry on meanwhile."""
from __future__ import annotations

import asyncio
import json
import os
import random
import re

import aiohttp
import pytest

from tests.support.waiting import async_wait_until
from wardcall.client import find_call
from wardcall.protocol import wardproto as wp

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(90)]

ENDPOINTS = ["/api/login", "/api/logout", "/api/state", "/api/events", "/api/health", "/api/calls/1/acknowledge",
             "/api/silence", "/api/terminals/bed-101-1/command", "/api/nothing", "/", "/console/../../ward.toml",
             "/console/%2e%2e/%2e%2e/ward.secrets.json", "/api/calls/-1/acknowledge", "/api/calls/99999999999999999999/acknowledge",
             "/api/terminals/..%2f..%2fetc/command"]


def server_errors(log: str) -> list[str]:
    """ERROR/CRITICAL records of the server log, each with its traceback."""
    records, current = [], None
    for line in log.splitlines():
        if re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ", line):
            current = None
            if re.match(r"^\S+ \S+ (ERROR|CRITICAL) ", line):
                current = [line]
                records.append(current)
        elif current is not None:
            current.append(line)
    return ["\n".join(r) for r in records]


def assert_no_traceback_but_gone_clients(log: str) -> None:
    """No error in the server log, except aiohttp's noise about clients that left mid-request
    ("Connection lost" while reading a body, "Cannot write to closing transport" when an SSE
    client left before api.py events() wrote its headers) or sent a malformed message that
    aiohttp answered 400 itself (aiohttp.http_exceptions.*): logged at ERROR by aiohttp, harmless."""
    noise = ("Cannot write to closing transport", "ConnectionResetError: Connection lost", "aiohttp.http_exceptions.")
    bad = [r for r in server_errors(log) if not any(n in r for n in noise)]
    assert not bad, "\n\n".join(bad)[-3000:]


async def raw_request(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send `data`, end the request, and return the first bytes of the answer (b"" if the host
    closed or reset the connection). A host that neither answers nor closes within `timeout` is
    a hanging handler: that fails the test (TimeoutError is an OSError, so it is caught first)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        if writer.can_write_eof():
            writer.write_eof()
        return await asyncio.wait_for(reader.read(65536), timeout)
    except TimeoutError:
        pytest.fail(f"no answer and no close within {timeout} s to the request {data[:80]!r}…")
    except (ConnectionError, OSError):
        return b""
    finally:
        writer.close()


def status_of(reply: bytes) -> int | None:
    try:
        return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else None
    except (IndexError, ValueError):
        return None


async def test_garbage_on_the_http_api_is_refused_and_harmless(ward_server):
    ward = ward_server.ward
    port = ward.api_port
    rng = random.Random(7)
    statuses = []
    hung: list[tuple[str, str, bytes]] = []     # requests the host neither answered nor closed
    secret = ward.device(0)["key"]

    # 1. bytes that are not HTTP at all, and broken HTTP
    raw_cases = [os.urandom(n) for n in (1, 100, 5000)] + [
        b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",   # a TLS hello
        b"GET /api/state HTTP/1.1\r\nHost: x\r\nCookie: wardcall_session=" + b"A" * 9000 + b"\r\n\r\n",
        b"GET /api/state HTTP/1.1\r\n" + b"X: y\r\n" * 500 + b"\r\n",
        b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n{",
        b"POST /api/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n{}{}{}{",
        b"GET /api/events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: \xff\xfe'; DROP TABLE calls;--\r\nAccept: */*\r\n\r\n",
        b"GET /" + b"a/" * 4000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    for data in raw_cases:
        reply = await raw_request(port, data)
        statuses.append(status_of(reply))
        assert secret.encode() not in reply

    # 2. well-formed HTTP with hostile contents, without and with a login
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        base = ward.api_url
        bodies = [b"", b"null", b"[]", b'"x"', b"{", b'{"user": 1, "password": []}', b'{"user": "nurse"}',
                  b'{"seconds": -1}', b'{"seconds": 1e309}', b'{"seconds": "NaN"}', b'{"command": "format_flash"}',
                  b'{"command": ["identify"]}', b"\xff\xfe\x00", json.dumps({"user": "nurse", "password": "x" * 100000}).encode(),
                  b"[" * 50000 + b"]" * 50000]
        for logged_in in (False, True):
            if logged_in:
                async with http.post(base + "/api/login", json={"user": "nurse", "password": "correct horse battery"}) as r:
                    assert r.status == 200
            for path in ENDPOINTS:
                for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
                    body = rng.choice(bodies)
                    headers = {"Content-Type": rng.choice(["application/json", "text/plain", "multipart/form-data"])}
                    try:
                        async with http.request(method, base + path, data=body, headers=headers,
                                                timeout=aiohttp.ClientTimeout(total=5)) as r:
                            if path == "/api/events" and r.status == 200:
                                statuses.append(200)
                                continue            # a real stream: ok for a logged-in GET
                            text = await r.read()
                            statuses.append(r.status)
                            assert secret.encode() not in text
                            assert b"[rooms." not in text and b"scrypt$" not in text, (method, path)
                    except TimeoutError:         # asyncio's and aiohttp's timeouts are TimeoutErrors
                        hung.append((method, path, body[:40]))
                    except aiohttp.ClientError:     # the host closed the connection: a refusal
                        statuses.append(None)
        # silence and commands with garbage never changed anything (log in again: a random
        # POST /api/logout above may have ended the session)
        async with http.post(base + "/api/login", json={"user": "nurse", "password": "correct horse battery"}) as r:
            assert r.status == 200
        async with http.get(base + "/api/state") as r:
            state = await r.json()
        assert state["sound"]["silenced_until"] is None

    assert not hung, f"requests that got no answer within 5 s (a hanging handler): {hung}"
    assert not [s for s in statuses if s is not None and s >= 500], statuses
    assert_no_traceback_but_gone_clients(ward_server.log_text())

    # the host still works
    term = ward.terminal(0)
    await term.connect()
    async with await ward_server.login() as api, api.events() as console:
        cid = await term.place_call(wp.PATIENT)
        await console.wait_for(lambda s: find_call(s, term.device, cid), timeout=4)
    await term.close()


async def test_a_huge_integer_in_a_json_body_is_refused_with_a_400(ward_server):
    """CPython refuses to convert an integer of more than 4300 digits (ValueError from json.loads,
    which is not a JSONDecodeError): the answer must still be a 400 with a JSON error, never a
    500 and a traceback, with and without a login."""
    huge = "1" * 4301
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        base = ward_server.api_url
        timeout = aiohttp.ClientTimeout(total=10)
        async with http.post(base + "/api/login", data=f'{{"user": "nurse", "password": {huge}}}',
                             headers={"Content-Type": "application/json"}, timeout=timeout) as r:
            assert r.status == 400, (r.status, await r.text())
            assert "error" in await r.json()
        async with http.post(base + "/api/login", json={"user": "nurse", "password": "correct horse battery"}) as r:
            assert r.status == 200
            token = (await r.json())["token"]          # an action carries it, as the console does
        async with http.post(base + "/api/silence", data=f'{{"seconds": {huge}}}', timeout=timeout,
                             headers={"Content-Type": "application/json", "X-Wardcall-Token": token}) as r:
            assert r.status == 400, (r.status, await r.text())
            assert "error" in await r.json()
        async with http.get(base + "/api/state") as r:
            assert (await r.json())["sound"]["silenced_until"] is None
    assert_no_traceback_but_gone_clients(ward_server.log_text())


async def test_event_stream_abuse_does_not_stop_real_consoles(ward_server):
    """Many event streams opened and dropped, never read, or half-sent: a real console still
    gets every call, and the host forgets the abandoned streams."""
    ward = ward_server.ward
    port = ward.api_port
    async with await ward_server.login() as api:
        cookie = next(iter(api.http.cookie_jar)).value
        # 50 logged-in streams that are never read (their buffers fill) and 50 cut at once
        idle = []
        for i in range(100):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"GET /api/events HTTP/1.1\r\nHost: x\r\nCookie: wardcall_session=" + cookie.encode() + b"\r\n\r\n")
            if i % 2:
                await asyncio.sleep(0)
                w.transport.abort()
            else:
                idle.append(w)
        # 100 slow requests that never finish their headers
        slow = []
        for _ in range(100):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"GET /api/events HTTP/1.1\r\nHost: x\r\n")
            slow.append(w)
        term = ward.terminal(0)
        await term.connect()
        async with api.events() as console:
            for kind in (wp.PATIENT, wp.BATHROOM, wp.CODE_BLUE):
                cid = await term.place_call(kind, timeout=4)
                await console.wait_for(lambda s: find_call(s, term.device, cid), timeout=4)
        for w in idle + slow:
            w.transport.abort()
        await term.close()

        async def no_consoles():
            return (await api.state())["consoles"] == 0
        await async_wait_until(no_consoles, 15, "the abandoned event streams no longer counted as consoles",
                               interval=0.2)
    assert_no_traceback_but_gone_clients(ward_server.log_text())
