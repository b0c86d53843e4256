"""The device keys file: JSON {"devices": {device id: 64 hex digits}}, readable only by its owner.

Kept apart from the ward TOML so the configuration can be shared and reviewed without the keys.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from .config import ConfigError
from .files import write_atomically
from .protocol import ProtocolError, wardproto


def new_key() -> str:
    return os.urandom(wardproto.KEY_LEN).hex()


def load_keys(path: Path) -> dict[str, bytes]:
    """The keys by device id. A missing file means no device is provisioned yet."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return {}
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(path, "", f"device keys must be readable only by their owner (mode 0600), not {stat.S_IMODE(mode):04o}; run: chmod 600 {path}")
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeError) as exc:
        raise ConfigError(path, "", f"cannot read the device keys: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(path, f"line {exc.lineno}, column {exc.colno}", f"not valid JSON: {exc.msg}") from None
    devices = data.get("devices") if isinstance(data, dict) else None
    if not isinstance(devices, dict):
        raise ConfigError(path, "", 'must be a JSON object {"devices": {"<device id>": "<64 hex digits>"}}')
    keys: dict[str, bytes] = {}
    for device, text in devices.items():
        try:
            keys[device] = wardproto.key_from_hex(text)
        except ProtocolError as exc:
            raise ConfigError(path, f"devices.{device}", exc.message) from None
    return keys


def write_private(path: Path, text: str) -> None:
    """Write a file whole or not at all, mode 0600 from its first byte."""
    write_atomically(path, text, 0o600)


def save_key(path: Path, device: str, key_hex: str) -> None:
    """Add or replace one device's key."""
    keys = {device_id: key.hex() for device_id, key in load_keys(path).items()}
    keys[device] = key_hex
    write_private(path, json.dumps({"devices": keys}, indent=2, sort_keys=True) + "\n")
