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
from .leaflink import LeafTls, connect_options, ward_leaf_tls
from .responder import serve_requests
from .settings import FederationSettings
from .subjects import EVENT_KINDS_CALL, events_subject, kv_key, ward_bucket, ward_stream

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
    if isinstance(value, bytes):
        return value
    return json.dumps(value, separators=(",", ":")).encode()


def _json_payload(fields: dict[str, Any], key: str, encoded: bytes) -> bytes:
    """fields as JSON with `key` holding an already encoded value."""
    return _json(fields)[:-1] + b',"' + key.encode() + b'":' + encoded + b"}"


def _json_merge(head: dict[str, Any], encoded: bytes) -> bytes:
    """head's keys first, then an encoded JSON object's."""
    return _json(head)[:-1] + b"," + encoded[1:]


class WardPublisher:
    def __init__(self, hub: "WardHub", settings: FederationSettings, leaf_tls: LeafTls | None = None) -> None:
        self.hub = hub
        self.settings = settings
        self.leaf_tls = leaf_tls                 # for a tls:// leaf node (federation/leaflink.py)
        self.ward_id = settings.ward_id
        self.run = secrets.token_hex(4)          # this host run: message ids are <run>-<seq>
        self.seq = 0
        # (subject, the event or its JSON, message id); JSON is made by the sender
        self.events: deque[tuple[str, dict[str, Any] | bytes, str]] = deque()
        self.kv: dict[str, Any] = {}             # key -> latest value (None: delete), in order
        self.dropped = 0                         # events dropped (queue full) since the start
        self._gap = 0                            # dropped and not yet announced
        self._gaps = 0                           # ev.gap events sent
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

    def state(self) -> dict[str, Any]:
        """Nothing of its own in the console's state (hub.EffectsObserver)."""
        return {}

    def observe(self, fx: Effects) -> None:
        started = time.perf_counter()
        try:
            self._observe(fx)
        except Exception as exc:   # the ward's own work must never stop for its publisher
            self._ratelog.log(logging.ERROR, ("observe",), "federation: a change could not be queued: %r", exc)
        self.observe_s += time.perf_counter() - started

    def _observe(self, fx: Effects) -> None:
        """One event per call that changed (its record kinds in `kinds`, the first as `kind`),
        each terminal whose status changed, each alarm; the bucket's keys. Only views are made
        here (fresh dicts); the JSON is made by the sender, after the ward has answered."""
        ward = self.hub.ward
        kinds: dict[int, list[str]] = {}
        users: dict[int, str | None] = {}
        walls: dict[int, float] = {}
        for record in fx.records:
            if record.kind in _EVENT_KINDS and record.call is not None:
                kinds.setdefault(record.call, []).append(record.kind)
                walls.setdefault(record.call, record.wall)
                if record.user is not None:
                    users[record.call] = record.user
        calls = dict(fx.calls)
        for call_id in kinds:
            if call_id not in calls:
                call = ward.call_by_id(call_id)
                if call is not None:
                    calls[call_id] = call
        for device, terminal in fx.terminals.items():
            shown = ward.terminal_view(terminal)
            what = (shown["status"], shown["connected"], tuple(shown["faults"]), shown["presence"])
            if self._terminals.get(device) == what:
                continue            # a heartbeat: nothing the hospital shows
            self._terminals[device] = what
            self._event("terminal", {"kind": "terminal", "wall": time.time(), "terminal": shown})
            self._put(kv_key("terminal", device), shown)
            # a call shows its terminal's status
            calls.update({c.id: c for c in ward.open_calls_of(device) if c.id not in calls})
        for call in calls.values():
            view = ward.call_view(call)
            told = kinds.get(call.id)
            if told is None:
                if self._calls.get(call.id) == view or (call.state == CLEARED and call.id not in self._calls):
                    continue
                told = ["call_updated"]
            self._event(f"call.{told[0]}", {"kind": told[0], "kinds": told, "wall": walls.get(call.id, time.time()),
                                            "user": users.get(call.id), "call": view})
            self._call_state(call, view)
        for alarm_id, (alarm, active) in fx.alarms.items():
            encoded = _json(alarm.view())     # its data may be the alarm's own lists: made into JSON now
            self._event("alarm", _json_payload({"kind": "alarm", "wall": time.time(), "active": active}, "alarm", encoded))
            self._put(kv_key("alarm", alarm_id), encoded if active else None)

    def _call_state(self, call: Call, view: dict[str, Any]) -> None:
        """The bucket's call.<id>: the open call's view and its stored row (what a standby
        host puts back on its board when it takes over); deleted once it is cleared."""
        if view["state"] == CLEARED:
            self._calls.pop(call.id, None)
            self._put(kv_key("call", call.id), None)
        else:
            self._calls[call.id] = view
            self._put(kv_key("call", call.id), {**view, "row": call.row()})

    def _event(self, what: str, payload: dict[str, Any] | bytes) -> None:
        self.seq += 1
        head = {"ward": self.ward_id, "ward_name": self.hub.config.ward, "run": self.run, "seq": self.seq}
        data: dict[str, Any] | bytes = {**head, **payload} if isinstance(payload, dict) else _json_merge(head, payload)
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
        self.kv[key] = value
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
        log.info("federation: %d events published, %d dropped, %d left queued; queuing them took the ward %.1f ms "
                 "in all (%.1f µs an event)", self.published, self.dropped, len(self.events), self.observe_s * 1000,
                 self.observe_s * 1e6 / max(1, self.seq))

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
                                          disconnected_cb=disconnected, reconnected_cb=reconnected, error_cb=error,
                                          **connect_options(self.settings.leaf_url, self.leaf_tls))
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
                gap, self._gaps = self._gap, self._gaps + 1
                await js.publish(events_subject(self.ward_id, "gap"),
                                 _json({"ward": self.ward_id, "run": self.run, "kind": "gap", "wall": time.time(),
                                        "dropped": gap}),
                                 timeout=SEND_TIMEOUT_S, headers={"Nats-Msg-Id": f"{self.run}-gap-{self._gaps}"})
                self._gap -= gap
            if self.events:
                subject, data, msg_id = self.events[0]
                await js.publish(subject, _json(data), timeout=SEND_TIMEOUT_S, headers={"Nats-Msg-Id": msg_id})
                if self.events and self.events[0][2] == msg_id:
                    self.events.popleft()
                self.published += 1
                continue
            key, value = next(iter(self.kv.items()))
            if value is None:
                await kv.delete(key)
            else:
                await kv.put(key, _json(value))
            if key in self.kv and self.kv[key] is value:
                del self.kv[key]


async def start_federation(hub: "WardHub") -> WardPublisher | None:
    """The ward's publisher, if its configuration has a [federation] section (server.py)."""
    settings = hub.config.federation
    if settings is None:
        return None
    publisher = WardPublisher(hub, settings, ward_leaf_tls(hub.config.tls))
    hub.observers.append(publisher)
    await publisher.start()
    return publisher

