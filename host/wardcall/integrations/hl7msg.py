"""HL7 v2.6 messages, built as ER7 text and read with the `hl7` package: the PCD-04 report
(ORU^R40^ORU_R01), the keep-alive, acknowledgements; field access for inbound ADT and ORA^R41.
Layouts with examples: docs/INTEGRATION.md.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import hl7

VERSION = "2.6"
ACM_PROFILE = "IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.4.4.1^ISO"
CHARSET = "UNICODE UTF-8"
EVT_ALARM = "196616^MDC_EVT_ALARM^MDC"
FACET = {   # IHE PCD ACM observation facets: OBX-3 code and OBX-4 sub-id's last part
    "event": ("", 1), "source": ("68480^MDC_ATTR_ALERT_SOURCE^MDC", 2),
    "phase": ("68481^MDC_ATTR_EVENT_PHASE^MDC", 3), "state": ("68482^MDC_ATTR_ALARM_STATE^MDC", 4),
    "inactivation": ("68483^MDC_ATTR_ALARM_INACTIVATION_STATE^MDC", 5),
    "priority": ("68484^MDC_ATTR_ALARM_PRIORITY^MDC", 6), "type": ("68485^MDC_ATTR_ALERT_TYPE^MDC", 7),
    "callback": ("CALLBACK^Call-back^WARDCALL", 8),
}


class Hl7Error(Exception):
    """A message that cannot be read or is not what it should be; `code` for the ACK (AE or AR)."""

    def __init__(self, text: str, code: str = "AE") -> None:
        super().__init__(text)
        self.code = code


def escape(text: str) -> str:
    """Text for a field: the delimiters escaped, control characters dropped."""
    out = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\").replace("&", "\\T\\").replace("~", "\\R\\")
    return "".join(c for c in out if c >= " ")


def timestamp(wall: float) -> str:
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(wall)) + "+0000"


@dataclass(frozen=True)
class Sender:
    """MSH-3..6 of what we send."""
    application: str
    facility: str
    peer_application: str
    peer_facility: str


@dataclass(frozen=True)
class Alert:
    """One alert's report: where, what, and its ACM facets."""
    alert_id: str               # OBR-3: unique per alert
    unit: str
    room: str
    bed: str
    event_code: str             # OBX-3 of the event identification (local code)
    event_text: str
    source: str                 # the calling station (device id)
    phase: str                  # start | update | end
    state: str                  # active | inactive
    inactivation: str           # enabled | alert-acknowledged | alarm-paused
    priority: str               # PH | PM | PL
    alert_type: str             # SP | ST | SA
    started: float              # wall
    changed: float              # wall
    ended: float | None = None
    callback: str = ""          # the calling station's call-back number
    patient_id: str = ""        # from ADT, if known
    patient_name: str = ""


def _msh(sender: Sender, control_id: str, wall: float, mtype: str, profile: str = "") -> str:
    fields = ["MSH", "^~\\&", sender.application, sender.facility, sender.peer_application, sender.peer_facility,
              timestamp(wall), "", mtype, control_id, "P", VERSION, "", "", "AL", "NE", "", CHARSET, "", "", profile]
    return "|".join(fields).rstrip("|")


def _obx(n: int, facet: str, value: str, wall: float, code: str = "", vtype: str = "ST") -> str:
    obx3, sub = FACET[facet]
    return "|".join(["OBX", str(n), vtype, code or obx3, f"1.0.0.0.{sub}", value, "", "", "", "", "", "F", "", "",
                     timestamp(wall)])


def oru_r40(sender: Sender, control_id: str, wall: float, alert: Alert) -> str:
    """PCD-04 Report Alert: one alert, its location in PV1-3, its id in OBR-3, its facets in OBX."""
    name = escape(alert.patient_name) if alert.patient_name else "^^^^^^U"
    pid3 = f"{escape(alert.patient_id)}^^^^MR" if alert.patient_id else ""
    location = "^".join(escape(x) for x in (alert.unit, alert.room, alert.bed))
    obr = ["OBR", "1", "", f"{escape(alert.alert_id)}^{sender.application}", EVT_ALARM, "", "", timestamp(alert.started),
           timestamp(alert.ended) if alert.ended is not None else ""]
    segments = [_msh(sender, control_id, wall, "ORU^R40^ORU_R01", ACM_PROFILE),
                f"PID|||{pid3}||{name}", f"PV1||I|{location}", "|".join(obr).rstrip("|")]
    event = f"{escape(alert.event_code)}^{escape(alert.event_text)}^WARDCALL"      # a local code: no MDC term for a nurse call
    facets = [("event", escape(alert.event_text), event), ("source", escape(alert.source), ""),
              ("phase", alert.phase, ""), ("state", alert.state, ""), ("inactivation", alert.inactivation, ""),
              ("priority", alert.priority, ""), ("type", alert.alert_type, "")]
    for n, (facet, value, code) in enumerate(facets, 1):
        segments.append(_obx(n, facet, value, alert.changed, code))
    if alert.callback:
        segments.append(_obx(len(facets) + 1, "callback", f"^WPN^PH^^^^{escape(alert.callback)}", alert.changed, vtype="XTN"))
    return "\r".join(segments)


def keepalive(sender: Sender, control_id: str, wall: float, unit: str) -> str:
    """The periodic keep-alive: an ORU^R40 with no alert (OBR-4 the local code KEEPALIVE), so the
    Alert Manager sees the reporter alive and the reporter sees the Alert Manager answer."""
    return "\r".join([_msh(sender, control_id, wall, "ORU^R40^ORU_R01", ACM_PROFILE),
                      "PID|||||^^^^^^U", f"PV1||I|{escape(unit)}",
                      f"OBR|1||{control_id}^{sender.application}|KEEPALIVE^Alert Reporter alive^WARDCALL|||{timestamp(wall)}"])


def parse(text: str) -> hl7.Message:
    if not text.startswith("MSH"):
        raise Hl7Error("not an HL7 message (it does not start with MSH)", "AR")
    try:
        return hl7.parse(text)
    except Exception as exc:   # hl7's parser raises several kinds on malformed text
        raise Hl7Error(f"cannot be read: {exc}", "AR") from None


def get(msg: hl7.Message, segment: str, field: int, component: int = 1, repeat: int = 1) -> str:
    """A component's text ("" when absent), without control characters (it goes into log lines)."""
    try:
        value = msg.unescape(str(msg.segment(segment).extract_field(1, field, repeat, component, 1)))
    except (KeyError, IndexError):
        return ""
    return "".join(c for c in value if c >= " ")


def message_type(msg: hl7.Message) -> str:
    """MSH-9 as "ADT^A01"."""
    return f"{get(msg, 'MSH', 9, 1)}^{get(msg, 'MSH', 9, 2)}"


def ack(msg: hl7.Message | None, sender: Sender, control_id: str, wall: float, code: str, text: str = "") -> str:
    """The original-mode acknowledgement of `msg` (None: one that could not be read at all)."""
    trigger = get(msg, "MSH", 9, 2) if msg is not None else ""
    peer_app = get(msg, "MSH", 3) if msg is not None else sender.peer_application
    peer_fac = get(msg, "MSH", 4) if msg is not None else sender.peer_facility
    acked = get(msg, "MSH", 10) if msg is not None else ""
    head = Sender(sender.application, sender.facility, escape(peer_app), escape(peer_fac))
    segments = [_msh(head, control_id, wall, f"ACK^{escape(trigger)}^ACK"), f"MSA|{code}|{escape(acked)}"]
    if code != "AA" and text:
        segments.append(f"ERR|||207^Application internal error^HL70357|E||||{escape(text[:200])}")
    return "\r".join(segments)


def ack_code(msg: hl7.Message) -> tuple[str, str, str]:
    """(MSA-1, MSA-2, the error text) of an acknowledgement."""
    return get(msg, "MSA", 1), get(msg, "MSA", 2), get(msg, "ERR", 8) or get(msg, "MSA", 3)
