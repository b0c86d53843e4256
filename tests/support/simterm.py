"""Test support: a simulated bed terminal in CPython, the real protocol (wardproto) with a real device key.

For the host's tests before firmware exists, and for load tests with thousands of terminals.
It does what a test tells it to (place a call with a given id, cancel, presence, go silent …)
and keeps every message the host sent, so a test can wait for the one it expects. It connects as
the terminal's config.json says: over TLS, verifying the host's certificate against the pinned
ward CA and name, or in plain TCP for a "plain" ward.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import ssl
import time
from typing import Any, Callable

from wardcall.config import DEFAULT_TLS_NAME
from wardcall.protocol import ProtocolError, wardproto
from wardcall.trust import ENV as TRUST_ENV

DEFAULT_CAPS = wardproto.CAP_CORD | wardproto.CAP_DOME | wardproto.CAP_BUZZER | wardproto.CAP_CODE


SHARED = "shared"       # the test wards' TLS: the CA named by WARDCALL_CA, the default name


def tls_context(tls: Any) -> tuple[ssl.SSLContext | None, str | None]:
    """(client context, the name to verify) from a config.json "tls" entry, or SHARED (the CA
    all test wards share, tests/fixtures/host.py); (None, None) for plain TCP ("plain")."""
    if tls == SHARED:
        ctx = ssl.create_default_context(cafile=os.environ[TRUST_ENV])
        return ctx, DEFAULT_TLS_NAME
    if not isinstance(tls, dict):
        return None, None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cadata=base64.b64decode(tls["ca"]))
    return ctx, tls["name"]


async def open_terminal_connection(host: str, port: int, tls: Any = SHARED, **kw: Any):
    """asyncio.open_connection to a test ward's terminal port, over TLS as a terminal connects
    (the raw-frame tests send their bytes inside it)."""
    ctx, name = tls_context(tls)
    return await asyncio.open_connection(host, port, ssl=ctx, server_hostname=name, **kw)


def default_hwid(device: str) -> bytes:
    """The hardware id a SimTerminal sends unless told otherwise: fixed per device id, so two
    SimTerminals for one device look like one physical board (a reconnection); a test that
    wants two boards claiming one device id passes another `hwid`."""
    return hashlib.sha256(device.encode()).digest()[:6]


class Refused(Exception):
    """The host closed the connection instead of answering HELLO (unknown device, wrong key)."""


class SimTerminal:
    def __init__(self, device: str, key: bytes | str, host: str, port: int, *, firmware: str = "simterm-1",
                 board: str = "simulated", caps: int = DEFAULT_CAPS, boot_count: int = 1,
                 auto_result: bool = True, hwid: bytes | None = None, tls: Any = SHARED) -> None:
        self.device = device
        self.key = wardproto.key_from_hex(key) if isinstance(key, str) else key
        self.host = host
        self.port = port
        self.firmware = firmware
        self.board = board
        self.caps = caps
        self.hwid = default_hwid(device) if hwid is None else hwid   # HELLO hwid (machine.unique_id())
        self.boot_count = boot_count
        self.auto_result = auto_result
        self.tls, self.tls_name = tls_context(tls)     # None: plain TCP
        self.status = 0                         # HEARTBEAT status bits
        self.calls_placed = 0
        self.hb_ms = 1000
        self.inbox: list[dict[str, Any]] = []   # every message from the host, in order
        self.welcome: dict[str, Any] | None = None
        self.closed = asyncio.Event()
        self.closed_because = ""                # why the read loop ended (said by wait_for)
        self.heartbeats_paused = False
        self._session: Any = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task] = []
        self._arrived = asyncio.Event()
        self._started = time.monotonic()

    @classmethod
    def from_config(cls, board_config: dict[str, Any], host: str | None = None, port: int | None = None, **kw: Any) -> "SimTerminal":
        """From the config.json that `wardcall provision` writes; host/port override it."""
        kw.setdefault("tls", board_config.get("tls"))
        return cls(board_config["device_id"], board_config["key"], host or board_config["host"] or "127.0.0.1",
                   port or board_config["port"], **kw)

    # ----- connection -----

    @property
    def local_address(self) -> str:
        """"host:port" of this end of the connection, as the host sees it."""
        name = self._writer.get_extra_info("sockname") if self._writer is not None else None
        return f"{name[0]}:{name[1]}" if name else ""

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self.closed.is_set()

    async def connect(self, timeout: float = 5.0) -> dict[str, Any]:
        """Handshake; returns WELCOME. Raises Refused if the host closes without answering."""
        await self.close()
        self.closed = asyncio.Event()
        self.closed_because = ""
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=self.tls, server_hostname=self.tls_name), timeout)
        self._session = wardproto.Session(self.key, False)
        self._writer.write(self._session.hello(self.device, self.firmware, self.board, self.caps, self.hwid))
        try:
            frame = await asyncio.wait_for(wardproto.read_frame(self._reader), timeout)
        except (EOFError, asyncio.IncompleteReadError, ConnectionError):
            await self.close()
            raise Refused(f"{self.device}: the host closed the connection without answering HELLO") from None
        self.welcome = self._session.accept_welcome(frame)
        self.hb_ms = self.welcome["hb_ms"]
        self._tasks = [asyncio.create_task(self._read_loop(), name=f"simterm read {self.device}"),
                       asyncio.create_task(self._heartbeat_loop(), name=f"simterm heartbeat {self.device}")]
        return self.welcome

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
            self._writer = None
        self.closed.set()

    async def _read_loop(self) -> None:
        assert self._reader is not None
        try:
            while True:
                frame = await wardproto.read_frame(self._reader)
                msg = self._session.decode(frame)
                msg["received"] = time.monotonic()
                self.inbox.append(msg)
                self._arrived.set()
                self._arrived = asyncio.Event()
                if msg["type"] == wardproto.COMMAND and self.auto_result:
                    self.send(wardproto.RESULT, {"cmd_id": msg["cmd_id"], "ok": 1, "detail": "simulated"})
        except (EOFError, asyncio.IncompleteReadError) as exc:
            self.closed_because = f"the host closed the connection ({type(exc).__name__})"
        except (ConnectionError, ProtocolError) as exc:
            self.closed_because = f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            self.closed_because = f"the simulated terminal failed: {exc!r}"
            raise
        finally:
            self.closed.set()
            self._arrived.set()

    async def _heartbeat_loop(self) -> None:
        while True:
            if not self.heartbeats_paused:
                self.send(wardproto.HEARTBEAT, {"status": self.status, "pending": 0,
                                                "uptime": int(time.monotonic() - self._started)})
            await asyncio.sleep(self.hb_ms / 1000)

    def pause_heartbeats(self) -> None:
        """Go silent while keeping the connection (a hung terminal)."""
        self.heartbeats_paused = True

    def resume_heartbeats(self) -> None:
        self.heartbeats_paused = False

    # ----- sending -----

    def send(self, mtype: int, fields: dict[str, Any]) -> None:
        if self._writer is None or self.closed.is_set():
            raise ConnectionError(f"{self.device}: not connected")
        self._writer.write(self._session.encode(mtype, fields))

    def send_raw(self, data: bytes) -> None:
        """Bytes straight onto the connection (malformed-frame tests)."""
        if self._writer is None:
            raise ConnectionError(f"{self.device}: not connected")
        self._writer.write(data)

    def next_call_id(self) -> int:
        self.calls_placed += 1
        return (self.boot_count & 0xFFFF) << 16 | self.calls_placed

    async def place_call(self, kind: int, call_id: int | None = None, age_ms: int = 0, priority: int | None = None,
                         wait_ack: bool = True, timeout: float = 5.0) -> int:
        """Send CALL; by default wait for its CALL_ACK (the host has then stored it)."""
        call_id = self.next_call_id() if call_id is None else call_id
        mark = len(self.inbox)
        self.send(wardproto.CALL, {"call": call_id, "kind": kind, "priority": kind if priority is None else priority, "age_ms": age_ms})
        if wait_ack:
            await self.wait_for(lambda m: m["type"] == wardproto.CALL_ACK and m["call"] == call_id and m["of"] == wardproto.CALL,
                                timeout, start=mark)
        return call_id

    async def resend_until_acknowledged(self, kind: int, call_id: int, within_s: float = 30.0,
                                        reconnect: bool = True) -> None:
        """What the firmware does with a call in its outbox: send it again every 3 s until CALL_ACK
        (reconnecting first when the session is gone, unless reconnect=False: then a lost session
        fails the caller)."""
        deadline = asyncio.get_running_loop().time() + within_s
        retried: tuple[type[BaseException], ...] = (TimeoutError, ConnectionError, OSError) if reconnect else (TimeoutError,)
        while True:
            try:
                if reconnect and not self.connected:
                    await self.connect()
                await self.place_call(kind, call_id=call_id, timeout=3)
                return
            except retried:
                if asyncio.get_running_loop().time() > deadline:
                    raise

    async def cancel(self, call_id: int, reason: int = wardproto.CANCEL_ORIGIN, age_ms: int = 0,
                     wait_ack: bool = True, timeout: float = 5.0) -> None:
        mark = len(self.inbox)
        self.send(wardproto.CANCEL, {"call": call_id, "reason": reason, "age_ms": age_ms})
        if wait_ack:
            await self.wait_for(lambda m: m["type"] == wardproto.CALL_ACK and m["call"] == call_id and m["of"] == wardproto.CANCEL,
                                timeout, start=mark)

    def presence(self, on: bool, staff: str = "") -> None:
        """Presence on/off, as the green button does (the heartbeat bit follows)."""
        if on:
            self.status |= wardproto.HB_PRESENCE
        else:
            self.status &= ~wardproto.HB_PRESENCE
        self.send(wardproto.PRESENCE, {"on": int(on), "staff": staff})

    def fault(self, code: int, active: bool, detail: str = "") -> None:
        bit = wardproto.HB_CORD_FAULT if code == wardproto.FAULT_CORD else wardproto.HB_DEVICE_FAULT
        self.status = self.status | bit if active else self.status & ~bit
        self.send(wardproto.FAULT, {"code": code, "active": int(active), "detail": detail})

    # ----- receiving -----

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0, start: int = 0) -> dict[str, Any]:
        """The first message from the host (from inbox index `start` on) that satisfies predicate."""
        deadline = asyncio.get_running_loop().time() + timeout
        seen = start
        while True:
            for msg in self.inbox[seen:]:
                if predicate(msg):
                    return msg
            seen = len(self.inbox)
            if self.closed.is_set():
                raise ConnectionError(f"{self.device}: connection closed while waiting"
                                      f" ({self.closed_because or 'closed by the test'})")
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"{self.device}: the expected message did not arrive within {timeout:g} s")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def call_states(self, call_id: int) -> list[str]:
        """Every CALL_STATE received for a call, by name, in order."""
        return [wardproto.STATE_NAMES[m["state"]] for m in self.inbox
                if m["type"] == wardproto.CALL_STATE and m["call"] == call_id]

    async def wait_call_state(self, call_id: int, state: int, timeout: float = 5.0, start: int = 0) -> dict[str, Any]:
        return await self.wait_for(lambda m: m["type"] == wardproto.CALL_STATE and m["call"] == call_id and m["state"] == state,
                                   timeout, start)


async def discover(device: str, key: bytes | str, port: int, address: str = "127.0.0.1", timeout: float = 2.0) -> tuple[str, int]:
    """UDP discovery as a terminal does it (one try): the (host, port) in a verified ANNOUNCE."""
    key = wardproto.key_from_hex(key) if isinstance(key, str) else key
    mac = wardproto.Hmac(key)
    nonce = os.urandom(wardproto.NONCE_LEN)
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[bytes] = loop.create_future()

    class _Proto(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple) -> None:
            if not answer.done():
                answer.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(_Proto, remote_addr=(address, port))
    try:
        transport.sendto(wardproto.discover(mac, device, nonce))
        data = await asyncio.wait_for(answer, timeout)
        return wardproto.accept_announce(mac, data, nonce)
    finally:
        transport.close()
