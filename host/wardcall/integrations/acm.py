"""IHE PCD ACM Alert Reporter: every call's life as PCD-04 (ORU^R40) to the Alert Manager, and
PCD-05 (ORA^R41) status back from it.

`observe()` is called by the hub for every published call, synchronously: it works out the
alert's phase (start, update, end) and queues the message on disk (queue.py). `run()` sends
the queue in order, one message after the ACK of the one before; a peer that is down only
delays them. A message keeps its MSH-10 when it is sent again (no ACK, a lost connection), so
the Alert Manager can tell a resend from a new message. The keep-alive goes when nothing else
has for `keepalive_s`.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Awaitable, Callable

from ..clock import Clock
from ..protocol import KIND_NAMES, alarm_priority, wardproto
from ..ratelog import RateLimitedLog
from ..ward.model import ACKNOWLEDGED, ATTENDED, CLEARED, Call
from .config import AcmConfig
from .hl7msg import Alert, Hl7Error, Sender, ack, ack_code, get, keepalive, message_type, oru_r40, parse
from .mllp import MllpClient, PeerUnreachable
from .patients import Patient
from .queue import DurableQueue, SideStore

log = logging.getLogger("wardcall.integrations.acm")

PRIORITY = {wardproto.ALARM_HIGH: "PH", wardproto.ALARM_MEDIUM: "PM", wardproto.ALARM_LOW: "PL"}
INACTIVATION = {ACKNOWLEDGED: "alert-acknowledged", ATTENDED: "alarm-paused"}    # else "enabled"
ACCEPTED = ("AA", "CA")
STATUSES = ("received", "delivered", "read", "accepted", "rejected", "undeliverable", "cancelled",
            "callback start", "callback end")

Health = Callable[[bool, str], Awaitable[None]]          # (reachable, what is wrong)
StatusHandler = Callable[[int, dict[str, Any]], Awaitable[None]]   # (host call id, status)


class AlertReporter:
    def __init__(self, cfg: AcmConfig, ward_name: str, namespace: str, run: str, store: SideStore, clock: Clock,
                 health: Health, patient_of: Callable[[str, str], Patient | None]) -> None:
        self.cfg = cfg
        self.unit = cfg.unit or ward_name
        self.namespace = namespace              # alert ids are unique across records: "<namespace>-<call id>"
        self.host_run = run                     # the host's run: message ids are unique across restarts
        self.store = store
        self.clock = clock
        self.health = health
        self.patient_of = patient_of
        self.sender = Sender(cfg.sending_application, cfg.sending_facility, cfg.receiving_application,
                             cfg.receiving_facility)
        self.queue = DurableQueue(store, "acm", clock.wall)
        self.client = MllpClient(cfg.host, cfg.port, cfg.connect_timeout_s)
        # call id -> what was last reported of it ("f": the facets; where and what, to end it after a
        # restart), so a call published again unchanged is not reported again
        self._reported: dict[int, dict[str, Any]] = {
            call: json.loads(facets) for call, facets in store.rows("SELECT call, facets FROM alerts")}
        self._ratelog = RateLimitedLog(log)
        self.sent = 0

    # ----- from the hub (synchronous: the ward never waits on the Alert Manager) -----

    def observe(self, call: Call) -> None:
        facets = [call.state, call.escalation, call.realerts]
        before = self._reported.get(call.id)
        if call.state == CLEARED:
            if before is None:
                return          # never reported (cleared before the reporter knew it): nothing to end
            phase = "end"
            del self._reported[call.id]
            self.store.execute("DELETE FROM alerts WHERE call = ?", call.id)
        else:
            if before is not None and before["f"] == facets:
                return
            phase = "start" if before is None else "update"
            entry = {"f": facets, "device": call.device, "kind": call.kind, "room": call.room, "bed": call.bed,
                     "placed_at": call.placed_at}
            self._reported[call.id] = entry
            self.store.execute("INSERT OR REPLACE INTO alerts (call, facets) VALUES (?, ?)", call.id, json.dumps(entry))
        seq = self.queue.reserve()
        self.queue.put(seq, oru_r40(self.sender, self.control_id(seq), self.clock.wall(), self.alert(call, phase)))

    def reconcile(self, open_calls: list[Call]) -> None:
        """At start: what the Alert Manager was last told against the open calls restored from the
        record — a call it was never told of (the integration is new, or the host died before the
        queue's commit) is started, one that changed is updated, one that is no longer open is ended."""
        for call in open_calls:
            self.observe(call)
        still_open = {c.id for c in open_calls}
        for call_id, entry in sorted(self._reported.items()):
            if call_id not in still_open:
                wall = self.clock.wall()
                self.observe(Call(call_id, entry["device"], 0, entry["kind"], entry["room"], entry["bed"], entry["placed_at"],
                                  entry["placed_at"], entry["placed_at"], state=CLEARED, cleared_at=wall))

    def alert(self, call: Call, phase: str) -> Alert:
        kind = KIND_NAMES[call.kind]
        patient = self.patient_of(call.room, call.bed) if call.bed else None
        ended = call.cleared_at if call.state == CLEARED else None
        return Alert(
            alert_id=self.alert_id(call.id), unit=self.unit, room=call.room, bed=call.bed,
            event_code=f"NC_{kind.upper()}", event_text=kind.replace("_", " ").capitalize() + " call",
            source=call.device, phase=phase, state="inactive" if call.state == CLEARED else "active",
            inactivation=INACTIVATION.get(call.state, "enabled"), priority=PRIORITY[alarm_priority(call.kind)],
            alert_type="ST" if call.kind == wardproto.TECHNICAL else "SP" if call.kind == wardproto.CODE_BLUE else "SA",
            started=call.placed_at, changed=ended if ended is not None else self.clock.wall(), ended=ended,
            callback=self.cfg.callbacks.get(call.room, ""),
            patient_id=patient.id if patient else "", patient_name=patient.shown if patient else "")

    def alert_id(self, call_id: int) -> str:
        return f"{self.namespace}-{call_id}"

    def call_of(self, alert_id: str) -> int | None:
        prefix, _, number = alert_id.rpartition("-")
        return int(number) if prefix == self.namespace and number.isdigit() else None

    def control_id(self, seq: int) -> str:
        """MSH-10: never the same for two messages, also across restarts and records."""
        return f"{self.namespace}-{self.host_run}-{seq}"

    # ----- the sender task -----

    async def run(self) -> None:
        while True:
            if not await self.queue.wait(self.cfg.keepalive_s):
                seq = self.queue.reserve()
                await self._send(seq, keepalive(self.sender, self.control_id(seq), self.clock.wall(), self.unit), durable=False)
                continue
            seq, text = self.queue.head()
            await self._send(seq, text, durable=True)

    async def _send(self, seq: int, text: str, durable: bool) -> None:
        control_id = text.split("\r", 1)[0].split("|")[9]     # MSH-10 as built (maybe by an earlier run)
        try:
            answer = await self.client.request(text, self.cfg.ack_timeout_s)
            code, acked, problem = ack_code(answer)
            if acked != control_id:
                raise PeerUnreachable(f"{self.cfg.host}:{self.cfg.port}: answered {acked!r} for {control_id!r}")
        except PeerUnreachable as exc:
            self._ratelog.warning("unreachable", "Alert Manager %s (%d message(s) wait)", exc, len(self.queue))
            await self.health(False, f"the Alert Manager {exc}: {len(self.queue)} alert message(s) wait")
            await asyncio.sleep(self.cfg.retry_s)
            return
        await self.health(True, "")
        if code not in ACCEPTED:
            # refused: sent again it would be refused again and hold up every alert behind it
            self._ratelog.log(logging.ERROR, ("refused", code), "Alert Manager refused message %s (%s): %s",
                              control_id, code, problem or "no reason given")
        if durable:
            self.queue.done(seq)
            self.sent += 1

    def close(self) -> None:
        self.client.close()

    # ----- PCD-05 from the Alert Manager -----

    async def status_message(self, text: str, handle: StatusHandler) -> str:
        """An ORA^R41 (alert status): to `handle`; the answer is its ACK (AE/AR with the reason)."""
        wall = self.clock.wall()
        seq = self.queue.reserve()
        try:
            msg = parse(text)
        except Hl7Error as exc:
            self._ratelog.warning("pcd05 unreadable", "PCD-05: a message that %s", exc)
            return ack(None, self.sender, self.control_id(seq), wall, exc.code, str(exc))
        try:
            if message_type(msg) != "ORA^R41":
                raise Hl7Error(f"message type {message_type(msg)} is not ORA^R41", "AR")
            alert_id = get(msg, "OBR", 3)
            call_id = self.call_of(alert_id)
            if call_id is None:
                raise Hl7Error(f"OBR-3 {alert_id!r} is not an alert of this reporter")
            status = get(msg, "OBX", 5).strip().lower()
            if status not in STATUSES:
                raise Hl7Error(f"OBX-5 status {status!r} is not one of {', '.join(STATUSES)}")
            person_id = get(msg, "OBX", 16, 1) or get(msg, "PRT", 5, 1)
            family = get(msg, "OBX", 16, 2) or get(msg, "PRT", 5, 2)
            given = get(msg, "OBX", 16, 3) or get(msg, "PRT", 5, 3)
            person = " ".join(p for p in (given, family) if p) or person_id
            await handle(call_id, {"status": status, "by": person, "by_id": person_id, "at": wall, "alert_id": alert_id})
        except Hl7Error as exc:
            self._ratelog.warning(("pcd05", exc.code), "PCD-05: %s", exc)
            return ack(msg, self.sender, self.control_id(seq), wall, exc.code, str(exc))
        return ack(msg, self.sender, self.control_id(seq), wall, "AA")
