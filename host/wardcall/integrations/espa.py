"""ESPA 4.4.4 to a paging or DECT system over a serial line (pyserial): the ward is the control
station and sends each call to its call numbers — the handsets of the nurses the call is routed
to, when the ward has assignments and they have handsets ([integrations.espa] handsets), else
the call kind's number ([integrations.espa] numbers).

One transmission: select the paging system (`<address> ENQ`, answered ACK), the data block
`SOH 1 STX <records> ETX BCC` (answered ACK, or NAK: sent again), then EOT. BCC is the XOR of
every character after SOH up to and including ETX. A record is `<identifier> US <value>`,
records are separated by RS: 1 call address, 2 display message, 3 beep coding, 6 priority.
A block not acknowledged after `retries` tries stays queued (on disk) and the paging system's
unavailability is an alarm; when idle, the line is checked every `check_s` (select, then EOT).
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable

import serial

from ..clock import Clock
from ..protocol import KIND_NAMES, alarm_priority, wardproto
from ..ratelog import RateLimitedLog
from ..ward.model import CLEARED, Call
from .acm import Health
from .config import EspaConfig
from .queue import DurableQueue, SideStore

log = logging.getLogger("wardcall.integrations.espa")

SOH, STX, ETX, EOT, ENQ, ACK, NAK, US, RS = b"\x01", b"\x02", b"\x03", b"\x04", b"\x05", b"\x06", b"\x15", b"\x1f", b"\x1e"
HEADER_CALL = b"1"
DISPLAY_MAX = 64


def bcc(data: bytes) -> int:
    value = 0
    for byte in data:
        value ^= byte
    return value


def block(records: list[tuple[str, str]]) -> bytes:
    """A data block: SOH header STX records ETX BCC."""
    body = RS.join(ident.encode("ascii") + US + value.encode("ascii", "replace") for ident, value in records)
    checked = HEADER_CALL + STX + body + ETX
    return SOH + checked + bytes([bcc(checked)])


class EspaPager:
    def __init__(self, cfg: EspaConfig, store: SideStore, clock: Clock, health: Health,
                 handsets_of: Callable[[list[str]], list[str]]) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.health = health
        self.handsets_of = handsets_of
        self.queue = DurableQueue(store, "espa", clock.wall)
        self._paged: dict[int, int] = dict(store.rows("SELECT call, escalation FROM paged"))
        self._port: serial.Serial | None = None
        self._ratelog = RateLimitedLog(log)

    # ----- from the hub -----

    def observe(self, call: Call) -> None:
        """A new call, and each escalation of it, is paged."""
        before = self._paged.get(call.id)
        if call.state == CLEARED:
            if self._paged.pop(call.id, None) is not None:
                self.store.execute("DELETE FROM paged WHERE call = ?", call.id)
            return
        if before is not None and call.escalation <= before:
            return
        self._paged[call.id] = call.escalation
        self.store.execute("INSERT OR REPLACE INTO paged (call, escalation) VALUES (?, ?)", call.id, call.escalation)
        kind = KIND_NAMES[call.kind]
        routed = list(call.route.step_users or call.route.to) if call.route is not None else []
        numbers = self.handsets_of(routed) or ([self.cfg.numbers[kind]] if kind in self.cfg.numbers else [])
        if not numbers:
            self._ratelog.warning(("no number", kind), "ESPA: no call number for %s calls: not paged", kind)
            return
        where = f"{call.room}/{call.bed}" if call.bed else call.room
        text = f"{kind.replace('_', ' ')} {where}" + (f" ESC {call.escalation}" if call.escalation else "")
        priority = "2" if alarm_priority(call.kind) == wardproto.ALARM_HIGH else "1"
        for number in numbers:
            self.queue.put(self.queue.reserve(), json.dumps({"number": number, "text": text[:DISPLAY_MAX], "priority": priority}))

    def reconcile(self, open_calls: list[Call]) -> None:
        """At start: an open call never paged (the integration is new, or the host died before
        the queue's commit) is paged; what is no longer open is forgotten."""
        for call in open_calls:
            self.observe(call)
        still_open = {c.id for c in open_calls}
        for call_id in [c for c in self._paged if c not in still_open]:
            del self._paged[call_id]
            self.store.execute("DELETE FROM paged WHERE call = ?", call_id)

    # ----- the sender task -----

    async def run(self) -> None:
        while True:
            if not await self.queue.wait(self.cfg.check_s):
                problem = await asyncio.to_thread(self._exchange, None)
            else:
                seq, payload = self.queue.head()
                problem = await asyncio.to_thread(self._exchange, json.loads(payload))
                if problem is None:
                    self.queue.done(seq)
            if problem is None:
                await self.health(True, "")
            else:
                self._ratelog.warning("unavailable", "ESPA paging system on %s: %s", self.cfg.device, problem)
                await self.health(False, f"the paging system on {self.cfg.device} {problem}: {len(self.queue)} page(s) wait")
                await asyncio.sleep(self.cfg.retry_s)

    def _exchange(self, page: dict[str, Any] | None) -> str | None:
        """(In a thread.) Transmit one page, or check the line (None); what went wrong, or None."""
        try:
            port = self._open()
            if not self._select(port):
                return f"does not answer its address {self.cfg.address} (ENQ)"
            if page is None:
                port.write(EOT)
                return None
            data = block([("1", page["number"]), ("2", page["text"]), ("3", "1"), ("6", page["priority"])])
            for _ in range(self.cfg.retries):
                port.write(data)
                answer = port.read(1)
                if answer == ACK:
                    port.write(EOT)
                    return None
                if answer not in (NAK, b""):
                    break       # not part of the protocol: end the transmission
            port.write(EOT)
            return f"did not acknowledge a page after {self.cfg.retries} tries"
        except (serial.SerialException, OSError) as exc:
            self._close()
            return f"cannot be used: {exc}"

    def _open(self) -> serial.Serial:
        if self._port is None:
            self._port = serial.Serial(self.cfg.device, self.cfg.baudrate, timeout=self.cfg.answer_timeout_s,
                                       write_timeout=self.cfg.answer_timeout_s)
        return self._port

    def _select(self, port: serial.Serial) -> bool:
        for _ in range(self.cfg.retries):
            port.reset_input_buffer()
            port.write(self.cfg.address.encode("ascii") + ENQ)
            answer = port.read(1)
            if answer == ACK:
                return True
            if answer == b"":
                continue        # no answer: try again
        return False

    def _close(self) -> None:
        if self._port is not None:
            try:
                self._port.close()
            except (serial.SerialException, OSError):
                pass
            self._port = None

    async def close(self) -> None:
        await asyncio.to_thread(self._close)
