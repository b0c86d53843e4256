"""The ward TOML's `[integrations.*]` tables → IntegrationsConfig (docs/INTEGRATION.md lists every key).

It does not import wardcall.config (which delegates `[integrations]` here): a problem is an
IntegrationConfigError with the place and what is wrong, which config.py turns into its ConfigError.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("code_blue", "staff_assist", "bathroom", "patient", "technical")
PATIENT_DISPLAYS = ("initials", "name", "id")
HL7_ID_RE = re.compile(r"^[A-Za-z0-9 ._-]{1,40}$")        # MSH-3..6: no HL7 delimiter in a name
CALL_NUMBER_RE = re.compile(r"^[0-9A-Za-z]{1,16}$")         # ESPA data identifier 1 (call address)


class IntegrationConfigError(Exception):
    def __init__(self, place: str, problem: str) -> None:
        super().__init__(f"{place}: {problem}")
        self.place = place
        self.problem = problem


@dataclass(frozen=True)
class AcmConfig:
    """[integrations.acm]: the PCD-04 Alert Reporter (and the PCD-05 status listener)."""
    host: str
    port: int
    sending_application: str = "WARDCALL"
    sending_facility: str = "WARD"
    receiving_application: str = "AM"
    receiving_facility: str = "HOSPITAL"
    unit: str = ""                          # PV1-3.1 point of care ("" = the ward's name)
    ack_timeout_s: float = 10.0
    retry_s: float = 5.0
    keepalive_s: float = 60.0
    connect_timeout_s: float = 5.0
    status_host: str = ""                   # PCD-05 listener; "" = none
    status_port: int = 0
    callbacks: dict[str, str] = field(default_factory=dict)   # room -> call-back number


@dataclass(frozen=True)
class AdtConfig:
    """[integrations.adt]: the HL7 ADT listener."""
    host: str = "127.0.0.1"
    port: int = 2575
    unit: str = ""                          # PV1-3.1 of this ward ("" = the ward's name)
    display: str = "initials"               # initials | name | id


@dataclass(frozen=True)
class EspaConfig:
    """[integrations.espa]: ESPA 4.4.4 to a paging / DECT system over a serial line."""
    device: str
    baudrate: int = 9600
    address: str = "1"                      # the paging system's station address
    numbers: dict[str, str] = field(default_factory=dict)      # call kind -> call number
    handsets: dict[str, str] = field(default_factory=dict)     # user -> her handset's call number
    answer_timeout_s: float = 2.0
    retries: int = 3
    retry_s: float = 5.0
    check_s: float = 30.0                   # the line is checked this often when idle


@dataclass(frozen=True)
class IntegrationsConfig:
    acm: AcmConfig | None = None
    adt: AdtConfig | None = None
    espa: EspaConfig | None = None
    queue_path: Path | None = None          # the outbound queue's SQLite file

    @property
    def any(self) -> bool:
        return self.acm is not None or self.adt is not None or self.espa is not None


class _Table:
    def __init__(self, place: str, table: Any) -> None:
        if not isinstance(table, dict):
            raise IntegrationConfigError(place, f"must be a table, not {type(table).__name__}")
        self.place = place
        self.table = table
        self.used: set[str] = set()

    def error(self, key: str, problem: str) -> IntegrationConfigError:
        return IntegrationConfigError(f"{self.place} {key}", problem)

    def text(self, key: str, default: str | None = None, pattern: re.Pattern | None = None) -> str:
        self.used.add(key)
        if key not in self.table:
            if default is None:
                raise self.error(key, "is missing")
            return default
        value = self.table[key]
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, not {value!r}")
        if pattern is not None and not pattern.match(value):
            raise self.error(key, f"{value!r} may not be used here (allowed: {pattern.pattern})")
        return value

    def number(self, key: str, default: float, minimum: float = 0.0, whole: bool = False) -> float:
        self.used.add(key)
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not isinstance(value, int)):
            raise self.error(key, f"must be a number{' (whole)' if whole else ''}, not {value!r}")
        # a time of 0 s would make a busy loop; counts and ports may start at their minimum
        if value < minimum or (key.endswith("_s") and value <= 0):
            raise self.error(key, f"must be more than {minimum:g}, not {value!r}")
        return value

    def port(self, key: str, default: int | None = None) -> int:
        if default is None and key not in self.table:
            raise self.error(key, "is missing")
        value = int(self.number(key, default if default is not None else 0, whole=True))
        if not 0 <= value <= 65535:
            raise self.error(key, f"port {value} is outside 0-65535")
        return value

    def strings(self, key: str, keys_allowed: tuple[str, ...] | None = None,
                pattern: re.Pattern | None = None) -> dict[str, str]:
        self.used.add(key)
        value = self.table.get(key, {})
        if not isinstance(value, dict):
            raise self.error(key, f"must be a table, not {value!r}")
        for k, v in value.items():
            if keys_allowed is not None and k not in keys_allowed:
                raise self.error(key, f"unknown key {k!r} (known: {', '.join(keys_allowed)})")
            if not isinstance(v, str) or (pattern is not None and not pattern.match(v)):
                raise self.error(f"{key}.{k}", f"must be a string of letters and digits, not {v!r}")
        return dict(value)

    def finish(self) -> None:
        extra = sorted(set(self.table) - self.used)
        if extra:
            raise IntegrationConfigError(self.place, f"unknown key {extra[0]!r} (known here: {', '.join(sorted(self.used))})")


def parse_integrations(table: Any, rooms: set[str], users: set[str], database: Path) -> IntegrationsConfig:
    """`[integrations]` of the ward TOML; `rooms` and `users` are the ward's, for cross-checks."""
    top = _Table("[integrations]", table)
    acm = adt = espa = None
    if "acm" in top.table:
        top.used.add("acm")
        t = _Table("[integrations.acm]", top.table["acm"])
        callbacks = t.strings("callbacks")
        unknown = sorted(set(callbacks) - rooms)
        if unknown:
            raise t.error("callbacks", f"room {unknown[0]!r} is not defined under [rooms]")
        acm = AcmConfig(
            host=t.text("host"), port=t.port("port"),
            sending_application=t.text("sending_application", AcmConfig.sending_application, HL7_ID_RE),
            sending_facility=t.text("sending_facility", AcmConfig.sending_facility, HL7_ID_RE),
            receiving_application=t.text("receiving_application", AcmConfig.receiving_application, HL7_ID_RE),
            receiving_facility=t.text("receiving_facility", AcmConfig.receiving_facility, HL7_ID_RE),
            unit=t.text("unit", "", re.compile(r"^[A-Za-z0-9 ._-]{0,40}$")),
            ack_timeout_s=t.number("ack_timeout_s", AcmConfig.ack_timeout_s),
            retry_s=t.number("retry_s", AcmConfig.retry_s),
            keepalive_s=t.number("keepalive_s", AcmConfig.keepalive_s),
            connect_timeout_s=t.number("connect_timeout_s", AcmConfig.connect_timeout_s),
            status_host=t.text("status_host", ""),
            status_port=t.port("status_port", 0),
            callbacks=callbacks,
        )
        t.finish()
    if "adt" in top.table:
        top.used.add("adt")
        t = _Table("[integrations.adt]", top.table["adt"])
        display = t.text("display", AdtConfig.display)
        if display not in PATIENT_DISPLAYS:
            raise t.error("display", f"must be one of {', '.join(PATIENT_DISPLAYS)}, not {display!r}")
        adt = AdtConfig(host=t.text("host", AdtConfig.host), port=t.port("port", AdtConfig.port),
                        unit=t.text("unit", "", re.compile(r"^[A-Za-z0-9 ._-]{0,40}$")), display=display)
        t.finish()
    if "espa" in top.table:
        top.used.add("espa")
        t = _Table("[integrations.espa]", top.table["espa"])
        handsets = t.strings("handsets", pattern=CALL_NUMBER_RE)
        unknown = sorted(set(handsets) - users)
        if unknown:
            raise t.error("handsets", f"user {unknown[0]!r} is not defined under [users]")
        numbers = t.strings("numbers", KINDS, CALL_NUMBER_RE)
        address = t.text("address", EspaConfig.address, re.compile(r"^[1-9]$"))
        espa = EspaConfig(device=t.text("device"), baudrate=int(t.number("baudrate", 9600, 50, whole=True)),
                          address=address, numbers=numbers, handsets=handsets,
                          answer_timeout_s=t.number("answer_timeout_s", EspaConfig.answer_timeout_s),
                          retries=int(t.number("retries", EspaConfig.retries, 1, whole=True)),
                          retry_s=t.number("retry_s", EspaConfig.retry_s),
                          check_s=t.number("check_s", EspaConfig.check_s))
        if not numbers and not handsets:
            raise t.error("numbers", "is needed (or handsets): the call numbers calls are paged to")
        t.finish()
    top.finish()
    queue_path = database.with_name(database.stem + ".integrations.db")
    return IntegrationsConfig(acm=acm, adt=adt, espa=espa, queue_path=queue_path)
