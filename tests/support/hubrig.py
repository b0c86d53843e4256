"""What the in-process WardHub tests share: a one-bed ward's configuration and a terminal link
that takes whatever the hub sends (tests of the record, not of the terminal)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from wardcall.config import WardConfig, parse_config


def one_bed_config() -> WardConfig:
    return parse_config(Path("/tmp/test-ward.toml"), {
        "ward": {"name": "W"},
        "rooms": {"101": {"beds": ["1"]}},
        "terminals": {"a1": {"room": "101", "bed": "1"}},
    })


class IdleLink:
    """A terminal's session as the hub sees it, sending nowhere."""

    def send(self, mtype: int, fields: dict[str, Any]) -> None:
        pass

    def close(self, reason: str) -> None:
        pass
