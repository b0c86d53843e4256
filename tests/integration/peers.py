"""The hospital's side, for the integration tests: an Alert Manager (the `hl7` package's asyncio
MLLP server), HL7 validation with hl7apy at version 2.6, and an ADT sender."""
from __future__ import annotations

import asyncio
from typing import Callable

import hl7
from hl7.mllp import open_hl7_connection, start_hl7_server
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message

LOOPBACK = "127.0.0.1"


def validate(text: str, patient_known: bool = True):
    """The message's structure, checked strictly by hl7apy at v2.6; returns the hl7apy message.
    With no patient known the PCD-04 report leaves PID-3 empty (docs/INTEGRATION.md): that one
    required field is then allowed to be missing, nothing else."""
    msg = parse_message(text.replace("\n", "\r"), validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert msg.msh.msh_12.value == "2.6"
    try:
        msg.validate()
    except HL7apyException as exc:
        if patient_known or "PID_3" not in str(exc):
            raise
        pid = msg.children[1].children[0].children[0]      # PATIENT_RESULT / PATIENT / PID
        assert pid.name == "PID"
        pid.pid_3 = "placeholder"                            # the one allowed gap, nothing else missing
        msg.validate()
    return msg


class AlertManager:
    """Takes ORU^R40 messages over MLLP and answers each with an ACK (AA unless `answer` says
    otherwise; `answer` returning None hangs up without answering)."""

    def __init__(self) -> None:
        self.messages: list[hl7.Message] = []
        self.texts: list[str] = []
        self.answer: Callable[[hl7.Message], str | None] = lambda msg: "AA"
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set = set()
        self.hung: list[hl7.Message] = []

    async def start(self, port: int = 0) -> "AlertManager":
        self._server = await start_hl7_server(self._client, LOOPBACK, port or self.port, encoding="utf-8")
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _client(self, reader, writer) -> None:
        self._writers.add(writer)
        try:
            while True:
                msg = await reader.readmessage()
                code = self.answer(msg)
                if code is None:
                    return
                if code == "HANG":             # takes the message and never answers
                    self.hung.append(msg)
                    await asyncio.Event().wait()
                self.messages.append(msg)
                self.texts.append(str(msg))
                writer.writemessage(msg.create_ack(code, message_id=f"AM{len(self.messages)}"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def alerts(self) -> list[hl7.Message]:
        """The alert reports (not the keep-alives)."""
        return [m for m in self.messages if str(m["OBR.F4.R1.C1"]) == "196616"]


def field(msg: hl7.Message, segment: str, number: int) -> str:
    """A whole field's text, components and all."""
    return str(msg.segment(segment)(number))


def facets(msg: hl7.Message) -> dict[str, str]:
    """The ACM facets of one report, by OBX-3 code text."""
    named = {"MDC_ATTR_EVENT_PHASE": "phase", "MDC_ATTR_ALARM_STATE": "state",
             "MDC_ATTR_ALARM_INACTIVATION_STATE": "inactivation", "MDC_ATTR_ALARM_PRIORITY": "priority",
             "MDC_ATTR_ALERT_TYPE": "type", "MDC_ATTR_ALERT_SOURCE": "source", "Call-back": "callback"}
    out = {}
    for obx in msg.segments("OBX"):
        parts = str(obx(3)).split("^")
        code = parts[1] if len(parts) > 1 else parts[0]
        out[named.get(code, "event" if str(obx(4)).endswith(".1") else code)] = str(obx(5))
    return out


async def send_hl7(port: int, text: str, timeout: float = 5.0) -> hl7.Message:
    """One message over MLLP; the answer."""
    reader, writer = await open_hl7_connection(LOOPBACK, port, encoding="utf-8")
    try:
        writer.writeblock(text.replace("\n", "\r").encode("utf-8"))
        await writer.drain()
        return await asyncio.wait_for(reader.readmessage(), timeout)
    finally:
        writer.close()


def adt(trigger: str, patient_id: str, family: str, given: str, location: str, prior: str = "",
        control_id: str = "MSG1") -> str:
    """An ADT message built (and validated) with hl7apy at v2.6: A01, A02, A03 or A08."""
    from hl7apy.core import Message
    structure = {"A01": "ADT_A01", "A08": "ADT_A01", "A02": "ADT_A02", "A03": "ADT_A03"}[trigger]
    msg = Message(structure, version="2.6")
    msg.msh.msh_3, msg.msh.msh_4, msg.msh.msh_5, msg.msh.msh_6 = "HIS", "HOSP", "WARDCALL", "WARD"
    msg.msh.msh_7 = "20261202010000"
    msg.msh.msh_9 = f"ADT^{trigger}^{structure}"
    msg.msh.msh_10, msg.msh.msh_11, msg.msh.msh_12 = control_id, "P", "2.6"
    msg.evn.evn_2 = "20261202010000"
    msg.pid.pid_3 = f"{patient_id}^^^HOSP^MR"
    msg.pid.pid_5 = f"{family}^{given}"
    msg.pv1.pv1_2 = "I"
    msg.pv1.pv1_3 = location
    if prior:
        msg.pv1.pv1_6 = prior
    msg.validate()
    return msg.to_er7()
