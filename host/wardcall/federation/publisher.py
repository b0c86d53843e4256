"""The ward's publisher: the hub's changes, as events on the ward's JetStream stream and as its
current state in the ward's key-value bucket, both on the ward's own leaf node.

The ward never waits for it. The hub calls `observe` after it has told the consoles (hub.py
`_publish`); observe only turns the change into messages and queues them in memory, bounded
(queue_max events; the bucket's keys are coalesced, the latest value of each key). One task
sends them in order, each event acknowledged by the leaf node's JetStream before the next, with
a message id so a resend after a lost acknowledgement is not stored twice. The leaf node keeps
the events in the ward's stream while the hub is away; the hub's stream sources them in order
when the link is back. A leaf node that does not answer only lets the queue grow; past its bound
the oldest events are dropped, counted, logged and announced with an `ev.gap` event (the bucket
still ends up right: it holds the latest state). The record (SQLite) stays the ward's truth.

Stream WARD_<ward> (subjects wardcall.<ward>.ev.>), bucket ward_<ward>: docs/FEDERATION.md.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import nats
import nats.errors
import nats.js.errors
from nats.js.api import KeyValueConfig, StorageType, StreamConfig

from ..ratelog import RateLimitedLog
from ..ward import CLEARED, Call, Effects
from .settings import FederationSettings
from .subjects import EVENT_KINDS_CALL, events_subject, kv_key, rpc_subject, ward_bucket, ward_stream

if TYPE_CHECKING:
    from ..hub import WardHub

log = logging.getLogger("wardcall.federation")

SEND_TIMEOUT_S = 2.0        # one publish's acknowledgement waited for this long, then sent again
RETRY_S = 0.5               # after a failure (leaf node down), the next try
CONNECT_TIMEOUT_S = 2.0
DUPLICATE_WINDOW_S = 120.0  # the stream drops a resent event (same message id) within this
NATS_ERRORS = (nats.errors.Error, nats.js.errors.Error, asyncio.TimeoutError, OSError)
_EVENT_KINDS = frozenset(EVENT_KINDS_CALL)


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


class WardPublisher:
    def __init__(self, hub: "WardHub", settings: FederationSettings) -> None:
        self.hub = hub
        self.settings = settings
        self.ward_id = settings.ward_id
        self.run = secrets.token_hex(4)          # this host run: message ids are <run>-<seq>
        self.seq = 0
        self.events: deque[tuple[str, bytes, str]] = deque()   # (subject, data, message id)
        self.kv: dict[str, bytes | None] = {}    # key -> latest value (None: delete), in order
        self.dropped = 0                         # events dropped (queue full) since the start
        self._gap = 0                            # dropped and not yet announced
        self.published = 0
        self.connected = False
        self.observe_s = 0.0                     # time spent in observe (the cost to the ward)
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._beat: asyncio.Task | None = None
        self._nc: Any = None
        self._terminals: dict[str, tuple[Any, ...]] = {}     # device -> what was last published
        self._calls: dict[int, dict[str, Any]] = {}           # open call id -> its last published view
        self._ratelog = RateLimitedLog(log)

    # ----- what the hub calls: never waits -----

    def observe(self, fx: Effects) -> None:
        started = time.perf_counter()
        try:
            self._observe(fx)
        except Exception as exc:   # the ward's own work must never stop for its publisher
            self._ratelog.log(logging.ERROR, ("observe",), "federation: a change could not be queued: %r", exc)
        self.observe_s += time.perf_counter() - started

    def _observe(self, fx: Effects) -> None:
        ward = self.hub.ward
        told: set[int] = set()
        for record in fx.records:
            if record.kind not in _EVENT_KINDS or record.call is None:
                continue
            call = fx.calls.get(record.call) or ward.call_by_id(record.call)
            if call is None:
                continue
            view = ward.call_view(call)
            self._event(f"call.{record.kind}", {"kind": record.kind, "wall": record.wall, "user": record.user,
                                                "call": view})
            self._call_state(call, view)
            told.add(call.id)
        calls = dict(fx.calls)
        for device in fx.terminals:
            calls.update({c.id: c for c in ward.open_calls_of(device)})
        for call in calls.values():
            if call.id in told:
                continue
            view = ward.call_view(call)
            if self._calls.get(call.id) != view and (call.state != CLEARED or call.id in self._calls):
                self._event("call.call_updated", {"kind": "call_updated", "wall": view.get("cleared_at") or time.time(),
                                                  "user": None, "call": view})
                self._call_state(call, view)
        for device, terminal in fx.terminals.items():
            shown = ward.terminal_view(terminal)
            what = (shown["status"], shown["connected"], tuple(shown["faults"]), shown["presence"])
            if self._terminals.get(device) != what:
                self._terminals[device] = what
                self._event("terminal", {"kind": "terminal", "wall": time.time(), "terminal": shown})
                self._put(kv_key("terminal", device), shown)
        for alarm_id, (alarm, active) in fx.alarms.items():
            self._event("alarm", {"kind": "alarm", "wall": time.time(), "alarm": alarm.view(), "active": active})
            self._put(kv_key("alarm", alarm_id), alarm.view() if active else None)

    def _call_state(self, call: Call, view: dict[str, Any]) -> None:
        """The bucket's call.<id>: the open call's view and its stored row (what a standby
        host puts back on its board when it takes over); deleted once it is cleared."""
        if view["state"] == CLEARED:
            self._calls.pop(call.id, None)
            self._put(kv_key("call", call.id), None)
        else:
            self._calls[call.id] = view
            self._put(kv_key("call", call.id), {**view, "row": call.row()})

    def _event(self, what: str, payload: dict[str, Any]) -> None:
        self.seq += 1
        data = _json({"ward": self.ward_id, "ward_name": self.hub.config.ward, "run": self.run, "seq": self.seq, **payload})
        if len(self.events) >= self.settings.queue_max:
            self.events.popleft()
            self.dropped += 1
            self._gap += 1
            self._ratelog.log(logging.ERROR, ("dropped",), "federation: the leaf node %s does not take the ward's "
                              "events; %d dropped so far (the oldest go first; the record has them all)",
                              self.settings.leaf_url, self.dropped)
        self.events.append((events_subject(self.ward_id, what), data, f"{self.run}-{self.seq}"))
        self._wake.set()

    def _put(self, key: str, value: Any) -> None:
        self.kv.pop(key, None)          # to the end: the keys are written in the order they changed
        self.kv[key] = None if value is None else _json(value)
        self._wake.set()

    # ----- the sender -----

    async def start(self) -> None:
        # the state the host starts with: every open call, terminal and standing alarm
        ward = self.hub.ward
        for call in ward.calls.values():
            self._call_state(call, ward.call_view(call))
        for device, terminal in ward.terminals.items():
            self._put(kv_key("terminal", device), ward.terminal_view(terminal))
        for alarm_id, alarm in ward.alarms.items():
            self._put(kv_key("alarm", alarm_id), alarm.view())
        self._task = asyncio.create_task(self._send_forever(), name="federation-publisher")
        self._beat = asyncio.create_task(self._host_beat(), name="federation-host-beat")

    async def aclose(self, drain_s: float = 2.0) -> None:
        """Stop: what is queued gets drain_s to reach the leaf node (it keeps it for the hub)."""
        if self._beat is not None:
            self._beat.cancel()
        deadline = time.monotonic() + drain_s
        while self.connected and (self.events or self.kv) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._nc is not None:
            await self._nc.close()

    def status(self) -> dict[str, Any]:
        return {"leaf_url": self.settings.leaf_url, "connected": self.connected, "queued": len(self.events),
                "keys_queued": len(self.kv), "published": self.published, "dropped": self.dropped,
                "observe_s": round(self.observe_s, 6)}

    async def _host_beat(self) -> None:
        """The `host` key: this host is alive and serving (the standby watches it)."""
        while True:
            ward = self.hub.ward
            self._put("host", {"ward": self.ward_id, "run": self.run, "pid": os.getpid(), "wall": time.time(),
                               "open_calls": len(ward.calls), "standby": self.settings.standby_of is not None})
            await asyncio.sleep(self.settings.host_beat_s)

    async def _connect(self) -> Any:
        async def disconnected() -> None:
            self.connected = False
            self._ratelog.warning(("link",), "federation: lost the leaf node %s (events are held)", self.settings.leaf_url)

        async def reconnected() -> None:
            self.connected = True
            log.info("federation: the leaf node %s is back", self.settings.leaf_url)
            self._wake.set()

        async def error(exc: Exception) -> None:
            self._ratelog.warning(("error", type(exc).__name__), "federation: leaf node %s: %s", self.settings.leaf_url, exc)

        while True:
            try:
                return await nats.connect(servers=[self.settings.leaf_url], name=f"wardcall {self.ward_id}",
                                          connect_timeout=CONNECT_TIMEOUT_S, reconnect_time_wait=RETRY_S,
                                          max_reconnect_attempts=-1, allow_reconnect=True,
                                          disconnected_cb=disconnected, reconnected_cb=reconnected, error_cb=error)
            except NATS_ERRORS as exc:
                self._ratelog.warning(("connect",), "federation: cannot reach the leaf node %s: %s (events are held)",
                                      self.settings.leaf_url, exc or type(exc).__name__)
                await asyncio.sleep(RETRY_S)

    async def _prepare(self, js: Any) -> Any:
        """The ward's stream and bucket on its leaf node (made or brought up to date)."""
        stream = StreamConfig(name=ward_stream(self.ward_id), subjects=[events_subject(self.ward_id)],
                              storage=StorageType.FILE, max_age=self.settings.stream_max_age_days * 86400,
                              max_bytes=self.settings.stream_max_mb * 1024 * 1024, duplicate_window=DUPLICATE_WINDOW_S)
        try:
            await js.stream_info(stream.name)
            await js.update_stream(stream)
        except nats.js.errors.NotFoundError:
            await js.add_stream(stream)
        try:
            return await js.key_value(ward_bucket(self.ward_id))
        except nats.js.errors.BucketNotFoundError:
            return await js.create_key_value(KeyValueConfig(bucket=ward_bucket(self.ward_id), history=1,
                                                            storage=StorageType.FILE))

    async def _send_forever(self) -> None:
        self._nc = await self._connect()
        self.connected = self._nc.is_connected
        js = self._nc.jetstream()
        from .responder import serve_requests      # the ward answers the hospital on the same link
        await serve_requests(self._nc, self.hub, self.ward_id)
        kv = None
        while True:
            try:
                if kv is None:
                    kv = await self._prepare(js)
                    log.info("federation: ward %s publishes to %s (stream %s, bucket %s)", self.ward_id,
                             self.settings.leaf_url, ward_stream(self.ward_id), ward_bucket(self.ward_id))
                await self._send_queued(js, kv)
            except NATS_ERRORS as exc:
                self._ratelog.warning(("send",), "federation: leaf node %s did not take an event: %s (held, sent again)",
                                      self.settings.leaf_url, exc or type(exc).__name__)
                await asyncio.sleep(RETRY_S)
                continue
            self._wake.clear()
            if not (self.events or self.kv):
                await self._wake.wait()

    async def _send_queued(self, js: Any, kv: Any) -> None:
        while self.events or self.kv:
            if self._gap:
                gap = self._gap
                self.seq += 1
                await js.publish(events_subject(self.ward_id, "gap"),
                                 _json({"ward": self.ward_id, "run": self.run, "seq": self.seq, "kind": "gap",
                                        "wall": time.time(), "dropped": gap}),
                                 timeout=SEND_TIMEOUT_S, headers={"Nats-Msg-Id": f"{self.run}-{self.seq}"})
                self._gap -= gap
            if self.events:
                subject, data, msg_id = self.events[0]
                await js.publish(subject, data, timeout=SEND_TIMEOUT_S, headers={"Nats-Msg-Id": msg_id})
                if self.events and self.events[0][2] == msg_id:
                    self.events.popleft()
                self.published += 1
                continue
            key, value = next(iter(self.kv.items()))
            if value is None:
                await kv.delete(key)
            else:
                await kv.put(key, value)
            if self.kv.get(key, b"") is value:
                del self.kv[key]


async def start_federation(hub: "WardHub") -> WardPublisher | None:
    """The ward's publisher, if its configuration has a [federation] section (server.py)."""
    settings = hub.config.federation
    if settings is None:
        return None
    publisher = WardPublisher(hub, settings)
    hub.observers.append(publisher.observe)
    await publisher.start()
    return publisher

