"""`wardcall provision`: a new terminal in the ward TOML, its key in the secrets file, and the
config.json that deploy puts on the board: with the ward CA pinned (its "tls" entry). A ward
without a CA gets one at its first provisioning (wardcall.tls.init_ca)."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from .config import DEVICE_ID_RE, ConfigError, WardConfig, load_config, parse_config, toml_key, toml_string
from .devicekeys import load_keys, new_key, save_key, write_private
from .files import write_atomically
from .tls import TlsError, init_ca, terminal_settings


class ProvisionError(Exception):
    pass


def standby_address(text: str | None, host: str | None, default_port: int) -> tuple[str, int] | None:
    """config.json's standby host from "HOST" or "HOST:PORT" (the port: the primary's by default);
    ValueError if it cannot be one. A terminal that finds its host by discovery needs none."""
    if not text:
        return None
    if not host:
        raise ValueError("a standby host needs the primary's address too (--host): a terminal "
                         "that finds its host by discovery finds whichever host answers")
    name, sep, port_text = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    port = default_port
    if sep:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"standby host {text!r}: {port_text!r} is not a port number (1-65535)")
        port = int(port_text)
    if not name or any(c.isspace() for c in name):
        raise ValueError(f"standby host {text!r} is not a host name or address")
    return name, port


def board_config(config: WardConfig, device: str, key_hex: str, wifi_ssid: str, wifi_password: str,
                 host: str | None, standby: tuple[str, int] | None = None) -> dict[str, Any]:
    """A terminal's config.json; `standby` (standby_address()) is tried after repeated failures
    with `host` (docs/FEDERATION.md, "The standby host")."""
    terminal = config.terminals[device]
    extra: dict[str, Any] = {}
    if standby is not None:
        extra = {"standby_host": standby[0], "standby_port": standby[1]}
    return {
        "device_id": device,
        "key": key_hex,
        "ward": config.ward,
        "room": terminal.room,
        "bed": terminal.bed,
        "wifi": {"ssid": wifi_ssid, "password": wifi_password},
        "host": host,            # None: the terminal finds the host by UDP discovery
        "port": config.network.terminal_port,
        "discovery_port": config.network.discovery_port,
        "tls": terminal_settings(config),
        **extra,
    }


def _append_terminal(path: Path, device: str, room: str, bed: str) -> None:
    """Append the terminal's table to the TOML text, so comments and layout stay as they are;
    the new text is parsed and checked before it replaces the file."""
    text = path.read_text("utf-8")
    block = f"\n[terminals.{toml_key(device)}]\nroom = {toml_string(room)}\nbed = {toml_string(bed)}\n"
    new_text = text + ("" if text.endswith("\n") or not text else "\n") + block
    try:
        parse_config(path, tomllib.loads(new_text))
    except tomllib.TOMLDecodeError as exc:
        raise ProvisionError(f"{path}: adding [terminals.{device}] would make the file invalid TOML ({exc}); "
                             "is [terminals] written as an inline table? add the terminal by hand") from None
    write_atomically(path, new_text, path.stat().st_mode & 0o7777)


def provision(config_path: Path, device: str, room: str, bed: str, out_dir: Path,
              wifi_ssid: str = "", wifi_password: str = "", host: str | None = None, rekey: bool = False,
              standby_host: str | None = None) -> dict[str, Any]:
    config = load_config(config_path)
    try:
        standby = standby_address(standby_host, host, config.network.terminal_port)
    except ValueError as exc:
        raise ProvisionError(str(exc)) from None
    if not DEVICE_ID_RE.match(device):
        raise ProvisionError(f"device id {device!r} may use letters, digits, '.', '_' and '-' only (at most 64)")
    existing = config.terminals.get(device)
    if existing is not None and not rekey:
        raise ProvisionError(f"{config_path}: terminal {device} is already provisioned (room {existing.room}, bed {existing.bed}); "
                             "use --rekey to give it a new key")
    if existing is not None and (existing.room, existing.bed) != (room, bed):
        raise ProvisionError(f"{config_path}: terminal {device} is in room {existing.room}, bed {existing.bed}; "
                             "change its place in the file, not with --rekey")
    if room not in config.rooms:
        raise ProvisionError(f"{config_path}: room {room!r} is not defined under [rooms] (defined: {', '.join(config.rooms) or 'none'})")
    beds = config.rooms[room].beds
    if beds and not bed and existing is None:
        raise ProvisionError(f"{config_path}: room {room} has beds {', '.join(beds)}: say which one this terminal is with --bed")
    if bed and beds and bed not in beds:
        raise ProvisionError(f"{config_path}: bed {bed!r} is not one of room {room}'s beds ({', '.join(beds)})")
    taken = next((t.device for t in config.terminals.values() if bed and (t.room, t.bed) == (room, bed) and t.device != device), None)
    if taken is not None:
        raise ProvisionError(f"{config_path}: room {room} bed {bed} already has terminal {taken}")
    load_keys(config.secrets)        # refuse early if the keys file is unreadable or too open
    if config.tls.terminals == "tls" and not config.tls.ca_cert.exists() and not config.tls.ca_key.exists():
        try:
            init_ca(config)      # the ward's first terminal: its CA (wardcall ca init does the same)
        except TlsError as exc:
            raise ProvisionError(str(exc)) from None
    key_hex = new_key()
    # the key first: a key without a terminal entry is harmless, a terminal without a key is refused
    save_key(config.secrets, device, key_hex)
    if existing is None:
        _append_terminal(config_path, device, room, bed)
    config = load_config(config_path)
    try:
        board = board_config(config, device, key_hex, wifi_ssid, wifi_password, host, standby)
    except TlsError as exc:
        raise ProvisionError(str(exc)) from None
    out_dir.mkdir(parents=True, exist_ok=True)
    write_private(out_dir / "config.json", json.dumps(board, indent=2) + "\n")
    return board


__all__ = ["provision", "board_config", "ProvisionError", "ConfigError"]
