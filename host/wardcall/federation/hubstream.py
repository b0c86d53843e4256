"""The hospital's stream on the hub: every ward's stream sourced across its leaf node's JetStream
domain. The hub's JetStream fetches each ward's events in the ward's order and goes on from
where it stopped after the hub or the link was down; nothing is relayed by hand."""
from __future__ import annotations

from typing import Any, Iterable

import nats.js.errors
from nats.js.api import ExternalStream, StorageType, StreamConfig, StreamSource

from .subjects import HOSPITAL_STREAM, ward_domain, ward_stream

HOSPITAL_MAX_AGE_DAYS = 90.0


def hospital_stream_config(ward_ids: Iterable[str], max_age_days: float = HOSPITAL_MAX_AGE_DAYS) -> StreamConfig:
    sources = [StreamSource(name=ward_stream(w), external=ExternalStream(api=f"$JS.{ward_domain(w)}.API"))
               for w in sorted(ward_ids)]
    return StreamConfig(name=HOSPITAL_STREAM, sources=sources, storage=StorageType.FILE,
                        max_age=max_age_days * 86400)


async def ensure_hospital_stream(js: Any, ward_ids: Iterable[str]) -> None:
    """Make the hospital's stream, or give it the wards' sources it lacks (a ward added)."""
    config = hospital_stream_config(ward_ids)
    try:
        info = await js.stream_info(HOSPITAL_STREAM)
    except nats.js.errors.NotFoundError:
        await js.add_stream(config)
        return
    have = sorted(s.name for s in (info.config.sources or []))
    if have != sorted(s.name for s in config.sources or []):
        await js.update_stream(config)
