"""The ward's optional [federation] section (docs/FEDERATION.md). It knows nothing of config.py:
a problem is a SettingError(key, problem), which config.py reports as a ConfigError."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .subjects import WARD_ID_RE

DEFAULT_LEAF_URL = "nats://127.0.0.1:4222"
DEFAULT_QUEUE_MAX = 10000           # events held in memory while the leaf node does not answer
DEFAULT_HOST_BEAT_S = 1.0           # the `host` key is written this often (the standby watches it)
DEFAULT_STREAM_MAX_AGE_DAYS = 30.0  # the ward's stream keeps its events this long
DEFAULT_STREAM_MAX_MB = 1024
DEFAULT_TAKEOVER_AFTER_S = 5.0      # a standby takes over once the primary's beat is silent this long


class SettingError(Exception):
    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class FederationSettings:
    ward_id: str                              # the ward's id in subjects, stream, bucket and domain
    leaf_url: str = DEFAULT_LEAF_URL          # the ward's own NATS leaf node
    queue_max: int = DEFAULT_QUEUE_MAX
    host_beat_s: float = DEFAULT_HOST_BEAT_S
    stream_max_age_days: float = DEFAULT_STREAM_MAX_AGE_DAYS
    stream_max_mb: int = DEFAULT_STREAM_MAX_MB
    # a standby host (`wardcall standby`): the primary's leaf node, whose bucket it follows
    standby_of: str | None = None
    takeover_after_s: float = DEFAULT_TAKEOVER_AFTER_S
    primary_terminal: str | None = None       # host:port: taken over only while it refuses too
    # the primary's side: the standby's terminal address; a primary that finds it serving does
    # not serve too (it comes back as the standby of the new primary instead)
    standby_terminal: str | None = None


_KEYS = ("ward", "leaf_url", "queue_max", "host_beat_s", "stream_max_age_days", "stream_max_mb",
         "standby_of", "takeover_after_s", "primary_terminal", "standby_terminal")


def _number(table: dict[str, Any], key: str, default: float, whole: bool = False) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not isinstance(value, int)):
        raise SettingError(key, f"must be a number{' (whole)' if whole else ''}, not {value!r}")
    if value <= 0:
        raise SettingError(key, f"must be more than 0, not {value!r}")
    return value


def parse_federation(table: Any) -> FederationSettings:
    if not isinstance(table, dict):
        raise SettingError("", f"must be a table, not {type(table).__name__}")
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise SettingError("", f"unknown key {unknown[0]!r} (known here: {', '.join(_KEYS)})")
    ward = table.get("ward")
    if not isinstance(ward, str) or not WARD_ID_RE.match(ward):
        raise SettingError("ward", f"must be the ward's id: lower-case letters, digits, '_' and '-' (at most 32), not {ward!r}")
    leaf_url = table.get("leaf_url", DEFAULT_LEAF_URL)
    if not isinstance(leaf_url, str) or not leaf_url.startswith(("nats://", "tls://")):
        raise SettingError("leaf_url", f"must be a nats:// or tls:// address, not {leaf_url!r}")
    standby_of = table.get("standby_of")
    if standby_of is not None and (not isinstance(standby_of, str) or not standby_of.startswith(("nats://", "tls://"))):
        raise SettingError("standby_of", f"must be the primary's leaf node, a nats:// or tls:// address, not {standby_of!r}")
    primary_terminal = _address(table, "primary_terminal", "the primary's")
    standby_terminal = _address(table, "standby_terminal", "the standby's")
    return FederationSettings(
        ward_id=ward, leaf_url=leaf_url,
        queue_max=int(_number(table, "queue_max", DEFAULT_QUEUE_MAX, whole=True)),
        host_beat_s=float(_number(table, "host_beat_s", DEFAULT_HOST_BEAT_S)),
        stream_max_age_days=float(_number(table, "stream_max_age_days", DEFAULT_STREAM_MAX_AGE_DAYS)),
        stream_max_mb=int(_number(table, "stream_max_mb", DEFAULT_STREAM_MAX_MB, whole=True)),
        standby_of=standby_of,
        takeover_after_s=float(_number(table, "takeover_after_s", DEFAULT_TAKEOVER_AFTER_S)),
        primary_terminal=primary_terminal,
        standby_terminal=standby_terminal,
    )


def _address(table: dict[str, Any], key: str, whose: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    host, _, port = str(value).rpartition(":")
    if not isinstance(value, str) or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingError(key, f"must be {whose} terminal address host:port, not {value!r}")
    return value
