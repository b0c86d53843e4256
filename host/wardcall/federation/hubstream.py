"""The hospital's stream on the hub: every ward's stream sourced across its leaf node's JetStream
domain. The hub's JetStream fetches each ward's events in the ward's order and goes on from
where it stopped after the hub or the link was down; nothing is relayed by hand. Each ward's
leaf node delivers under its own prefix (subjects.ward_deliver_prefix), which the hub's ward
account exports to the hospital's (natsconf.HubNode)."""
from __future__ import annotations

from typing import Any, Iterable

import nats.js.errors
from nats.js.api import ExternalStream, StorageType, StreamConfig, StreamSource

from .subjects import HOSPITAL_STREAM, ward_deliver_prefix, ward_domain, ward_stream

HOSPITAL_MAX_AGE_DAYS = 90.0


def hospital_stream_config(ward_ids: Iterable[str], max_age_days: float = HOSPITAL_MAX_AGE_DAYS,
                           standby: Iterable[str] = (), replicas: int = 1) -> StreamConfig:
    """Every ward's stream; a ward with a standby host also that host's (its own domain): the
    one that serves publishes, the other's stream stands still."""
    pairs = [(w, False) for w in ward_ids] + [(w, True) for w in standby]
    sources = [StreamSource(name=ward_stream(w), external=ExternalStream(api=f"$JS.{ward_domain(w, s)}.API",
                                                                        deliver=ward_deliver_prefix(w, s)))
               for w, s in sorted(pairs)]
    return StreamConfig(name=HOSPITAL_STREAM, sources=sources, storage=StorageType.FILE,
                        max_age=max_age_days * 86400, num_replicas=replicas)


async def ensure_hospital_stream(js: Any, ward_ids: Iterable[str], standby: Iterable[str] = (), replicas: int = 1) -> None:
    """Make the hospital's stream (`replicas` copies on the hub's nodes: 3 on a cluster of
    three, so it goes on with a node down), or give it the wards' sources it lacks."""
    config = hospital_stream_config(ward_ids, standby=standby, replicas=replicas)
    try:
        info = await js.stream_info(HOSPITAL_STREAM)
    except nats.js.errors.NotFoundError:
        await js.add_stream(config)
        return
    def names(sources: Any) -> list[tuple[str, str]]:
        return sorted((s.name, s.external.api if s.external else "", s.external.deliver if s.external else "")
                      for s in sources or [])
    if names(info.config.sources) != names(config.sources):
        await js.update_stream(config)
