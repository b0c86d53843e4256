"""Integrations: the hospital interfaces in one object the server starts and stops, and the hub
tells every published change (hub.EffectsObserver).

The hub's call into `observe()` only queues (memory, then the side store's writer thread);
sending runs in this object's tasks, so the ward never waits on a hospital system. A peer
that cannot be reached is the console alarm `integration_unreachable` until it can.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..hub import WardHub
from ..ward import CLEARED, Effects
from .acm import AlertReporter
from .adt import AdtReceiver
from .espa import EspaPager
from .mllp import start_listener
from .patients import Patient, PatientBoard
from .queue import SideStore

log = logging.getLogger("wardcall.integrations")


class Integrations:
    def __init__(self, hub: WardHub, namespace: str, run: str) -> None:
        cfg = hub.config.integrations
        self.hub = hub
        self.cfg = cfg
        self.store = SideStore(cfg.queue_path) if cfg.any and cfg.queue_path is not None else None
        self.board = PatientBoard(self.store, self._patient_changed) if cfg.adt and self.store else None
        self.statuses: dict[int, dict[str, Any]] = {}        # call id -> its latest PCD-05 status
        self._down: dict[str, str] = {}                      # peer -> what is wrong
        self.acm = AlertReporter(cfg.acm, hub.config.ward, namespace, run, self.store, hub.clock,
                                 lambda ok, text: self._health("acm", ok, text), self.patient_on) \
            if cfg.acm and self.store else None
        self.adt = AdtReceiver(cfg.adt, hub.config.ward, {r.id: r.beds for r in hub.config.rooms.values()},
                               self.board, hub.clock, self._record) if cfg.adt and self.board else None
        self.espa = EspaPager(cfg.espa, self.store, hub.clock, lambda ok, text: self._health("espa", ok, text),
                              self._handsets_of) if cfg.espa and self.store else None
        self._tasks: list[asyncio.Task] = []
        self._servers: list[asyncio.AbstractServer] = []
        self.ports: dict[str, int] = {}

    # ----- the hub's side (synchronous) -----

    def observe(self, fx: Effects) -> None:
        for call in fx.calls.values():
            if self.acm is not None:
                self.acm.observe(call)
            if self.espa is not None:
                self.espa.observe(call)
            if call.state == CLEARED:
                self.statuses.pop(call.id, None)

    def state(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.board is not None:
            extra["patients"] = self.board.view()
        if self.acm is not None:
            extra["alert_status"] = {str(k): v for k, v in self.statuses.items()}
        return extra

    def patient_on(self, room: str, bed: str) -> Patient | None:
        return self.board.on_bed(room, bed) if self.board is not None else None

    def _handsets_of(self, users: list[str]) -> list[str]:
        return [self.cfg.espa.handsets[u] for u in users if self.cfg.espa and u in self.cfg.espa.handsets]

    # ----- start and stop -----

    async def start(self) -> None:
        """After the restore: the open calls are checked against what the peers were last told."""
        open_calls = sorted(self.hub.ward.calls.values(), key=lambda c: c.id)
        if self.acm is not None:
            self.acm.reconcile(open_calls)
        if self.espa is not None:
            self.espa.reconcile(open_calls)
        if self.acm is not None:
            self._tasks.append(asyncio.create_task(self.acm.run(), name="acm"))
            if self.cfg.acm.status_host:
                server = await start_listener(self.cfg.acm.status_host, self.cfg.acm.status_port,
                                              lambda text: self.acm.status_message(text, self._alert_status), "PCD-05")
                self._servers.append(server)
                self.ports["acm_status"] = server.sockets[0].getsockname()[1]
        if self.adt is not None:
            server = await start_listener(self.cfg.adt.host, self.cfg.adt.port, self.adt.message, "ADT")
            self._servers.append(server)
            self.ports["adt"] = server.sockets[0].getsockname()[1]
        if self.espa is not None:
            self._tasks.append(asyncio.create_task(self.espa.run(), name="espa"))
        if self.ports:
            log.info("integrations listening: %s", ", ".join(f"{k} on port {v}" for k, v in sorted(self.ports.items())))

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):   # ended: what it held is on disk
                pass
        if self.acm is not None:
            self.acm.close()
        if self.espa is not None:
            await self.espa.close()
        if self.store is not None:
            await asyncio.to_thread(self.store.close)

    # ----- what the interfaces tell -----

    async def _health(self, peer: str, ok: bool, text: str) -> None:
        if ok:
            if self._down.pop(peer, None) is not None:
                log.warning("integration %s: reachable again", peer)
                await self.hub.apply(self.hub.ward.peer_reachable(peer))
        elif self._down.get(peer) != text:
            self._down[peer] = text
            await self.hub.apply(self.hub.ward.peer_unreachable(peer, text))

    async def _record(self, kind: str, **data: Any) -> None:
        await self.hub.record(kind, **data)

    def _patient_changed(self, room: str, bed: str, patient: Patient | None) -> None:
        self.hub.bus.publish("patient", {"room": room, "bed": bed, "patient": patient.view() if patient else None})

    async def _alert_status(self, call_id: int, status: dict[str, Any]) -> None:
        if self.hub.ward.call_by_id(call_id) is not None:
            self.statuses[call_id] = status
            self.hub.bus.publish("alert_status", {"call": call_id, **status})
        await self.hub.record("alert_status", call_id=call_id, **{k: v for k, v in status.items() if k != "at"})
