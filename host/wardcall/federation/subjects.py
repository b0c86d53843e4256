"""The names the ward and the hospital agree on: subjects, streams, buckets, domains, keys.

A ward id is one subject token and part of a stream, bucket and domain name, so it is kept to
lower-case letters, digits, '_' and '-'.
"""
from __future__ import annotations

import re

WARD_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
PREFIX = "wardcall"
HOSPITAL_STREAM = "HOSPITAL"        # on the hub: every ward's stream, sourced
HUB_DOMAIN = "hub"
EVENT_KINDS_CALL = ("call_placed", "call_routed", "call_acknowledged", "call_accepted", "call_declined",
                    "call_passed_on", "call_escalated", "call_realerted", "call_attended", "call_cleared",
                    "call_restored", "call_updated")
_KV_SAFE = re.compile(r"[^-_A-Za-z0-9]")


def events_subject(ward: str, what: str = ">") -> str:
    """wardcall.<ward>.ev.call.<kind> | .ev.terminal | .ev.alarm | .ev.gap | .ev.host"""
    return f"{PREFIX}.{ward}.ev.{what}"


def rpc_subject(ward: str, what: str) -> str:
    """wardcall.<ward>.rpc.accept: requests the ward host answers (not in its stream)."""
    return f"{PREFIX}.{ward}.rpc.{what}"


def ward_of_subject(subject: str) -> str | None:
    parts = subject.split(".")
    return parts[1] if len(parts) > 3 and parts[0] == PREFIX and parts[2] == "ev" else None


def ward_stream(ward: str) -> str:
    return f"WARD_{ward}"


def ward_bucket(ward: str) -> str:
    return f"ward_{ward}"


def ward_domain(ward: str, standby: bool = False) -> str:
    """The JetStream domain of the ward's leaf node (its standby host's has its own)."""
    return f"ward-{ward}-standby" if standby else f"ward-{ward}"


def ward_deliver_prefix(ward: str, standby: bool = False) -> str:
    """Where a ward's leaf node delivers its stream to the hub's hospital stream (the sourcing
    consumer's subjects): a prefix of its own, so that the hub's ward account can export it to
    the hospital's account and nothing else (natsconf.HubNode)."""
    return f"deliver.{ward_domain(ward, standby)}"


def ward_account(ward: str) -> str:
    """The ward's account on the hub: its leaf node's logins land there, apart from other wards."""
    return f"WARD_{ward}"


HOSPITAL_ACCOUNT = "HOSPITAL"       # the hub's account of the hospital console and its stream


def kv_key(kind: str, name: str | int) -> str:
    """A bucket key `<kind>.<name>`: characters a key may not hold are written =XX (hex)."""
    text = _KV_SAFE.sub(lambda m: "".join(f"={b:02X}" for b in m.group().encode()), str(name))
    return f"{kind}.{text}"
