"""HL7 ADT in: A01 admit, A02 transfer, A03 discharge, A08 update → the patient on each bed.

PV1-3 is the location: point of care (this ward's unit) ^ room ^ bed. A location in this unit
that the ward does not have is logged and answered AE: a patient is never put on a guessed bed.
A location in another unit takes the patient off this ward's bed (moved away). Every message is
answered: AA, or AE/AR with the reason in ERR; nothing in a message can stop the listener.
"""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from ..clock import Clock
from ..ratelog import RateLimitedLog
from .config import AdtConfig
from .hl7msg import Hl7Error, Sender, ack, get, message_type, parse
from .patients import Patient, PatientBoard

log = logging.getLogger("wardcall.integrations.adt")

HANDLED = ("A01", "A02", "A03", "A08")
Record = Callable[..., Awaitable[None]]      # record(kind, **data): a line in the ward's record


class AdtReceiver:
    def __init__(self, cfg: AdtConfig, ward_name: str, beds: dict[str, tuple[str, ...]], board: PatientBoard,
                 clock: Clock, record: Record) -> None:
        self.cfg = cfg
        self.unit = cfg.unit or ward_name
        self.beds = beds                        # room -> its beds
        self.board = board
        self.clock = clock
        self.record = record
        self.sender = Sender("WARDCALL", ward_name[:40], "ADT", "HOSPITAL")
        self._acks = 0
        self._ratelog = RateLimitedLog(log)

    async def message(self, text: str) -> str:
        wall = self.clock.wall()
        self._acks += 1
        control_id = f"ADTACK{int(wall)}-{self._acks}"
        try:
            msg = parse(text)
        except Hl7Error as exc:
            self._ratelog.warning("unreadable", "ADT: a message that %s", exc)
            return ack(None, self.sender, control_id, wall, exc.code, str(exc))
        try:
            await self._apply(msg, wall)
        except Hl7Error as exc:
            self._ratelog.warning(("adt", exc.code), "ADT %s %s: %s", message_type(msg), get(msg, "MSH", 10), exc)
            return ack(msg, self.sender, control_id, wall, exc.code, str(exc))
        return ack(msg, self.sender, control_id, wall, "AA")

    async def _apply(self, msg: Any, wall: float) -> None:
        mtype, trigger = get(msg, "MSH", 9, 1), get(msg, "MSH", 9, 2)
        if mtype != "ADT":
            raise Hl7Error(f"message type {mtype}^{trigger} is not ADT", "AR")
        if trigger not in HANDLED:
            log.debug("ADT %s: not used by the ward", trigger)
            return
        patient_id = get(msg, "PID", 3, 1)
        if not patient_id:
            raise Hl7Error("PID-3 (the patient identifier) is empty")
        unit, room, bed = get(msg, "PV1", 3, 1), get(msg, "PV1", 3, 2), get(msg, "PV1", 3, 3)
        ours = unit == self.unit
        if ours and bed not in self.beds.get(room, ()):
            raise Hl7Error(f"location {unit}^{room}^{bed} (PV1-3) is not a bed of this ward: patient not placed")
        where = self.board.bed_of(patient_id)
        if trigger == "A03":
            place = where or ((room, bed) if ours else None)
            if place is not None and (where is not None or self.board.on_bed(*place) is not None):
                self.board.clear(*place)
                await self.record("patient_discharged", room=place[0], bed=place[1], patient=patient_id)
            return
        if not ours:
            if where is not None:       # moved to another unit
                self.board.clear(*where)
                await self.record("patient_left", room=where[0], bed=where[1], patient=patient_id, to=f"{unit}^{room}^{bed}")
            return
        before = self.board.on_bed(room, bed)
        # on this bed since it was put there (an update keeps the time)
        since = before.since if before is not None and before.id == patient_id else wall
        patient = Patient(patient_id, self._shown(msg, patient_id), since)
        self.board.put(room, bed, patient)
        if before != patient:
            kind = {"A01": "patient_admitted", "A02": "patient_transferred", "A08": "patient_updated"}[trigger]
            await self.record(kind, room=room, bed=bed, patient=patient_id,
                              **({"from": f"{where[0]}/{where[1]}"} if where and where != (room, bed) else {}))

    def _shown(self, msg: Any, patient_id: str) -> str:
        family, given = get(msg, "PID", 5, 1), get(msg, "PID", 5, 2)
        if self.cfg.display == "id" or not (family or given):
            return patient_id
        if self.cfg.display == "initials":
            return "".join(p[0].upper() + "." for p in (given, family) if p)
        return " ".join(p for p in (given, family) if p)
