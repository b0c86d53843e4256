"""The patient on each bed (from HL7 ADT, adt.py): kept in the integrations store beside the
record, so a restart keeps it; shown to logged-in staff only (the console's state and events).

Only what is shown is kept: the identifier and, as configured, the initials or the name."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .queue import SideStore


@dataclass(frozen=True)
class Patient:
    id: str
    shown: str          # initials, name or id, as [integrations.adt] display says
    since: float = 0.0  # wall

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "shown": self.shown, "since": self.since}


Changed = Callable[[str, str, "Patient | None"], None]       # (room, bed, the patient now or None)


class PatientBoard:
    def __init__(self, store: SideStore, changed: Changed) -> None:
        self.store = store
        self.changed = changed
        self.beds: dict[tuple[str, str], Patient] = {
            (room, bed): Patient(pid, shown, since)
            for room, bed, pid, shown, since in store.rows("SELECT room, bed, patient, shown, since FROM patients")}

    def on_bed(self, room: str, bed: str) -> Patient | None:
        return self.beds.get((room, bed))

    def bed_of(self, patient_id: str) -> tuple[str, str] | None:
        return next((place for place, p in self.beds.items() if p.id == patient_id), None)

    def put(self, room: str, bed: str, patient: Patient) -> None:
        """`patient` on this bed (off any other bed: one patient, one bed)."""
        old = self.bed_of(patient.id)
        if old is not None and old != (room, bed):
            self.clear(*old)
        if self.beds.get((room, bed)) == patient:
            return
        self.beds[(room, bed)] = patient
        self.store.execute("INSERT OR REPLACE INTO patients (room, bed, patient, shown, since) VALUES (?, ?, ?, ?, ?)",
                           room, bed, patient.id, patient.shown, patient.since)
        self.changed(room, bed, patient)

    def clear(self, room: str, bed: str) -> None:
        if self.beds.pop((room, bed), None) is not None:
            self.store.execute("DELETE FROM patients WHERE room = ? AND bed = ?", room, bed)
            self.changed(room, bed, None)

    def view(self) -> dict[str, Any]:
        return {f"{room}/{bed}": p.view() for (room, bed), p in sorted(self.beds.items())}
