"""Helpers for the TLS tests: TLS record parsing of captured bytes, a ward whose host
certificate is made wrong before its host starts, an emulated board for a provisioned device."""
from __future__ import annotations

import datetime
import os
import shutil
import struct
from pathlib import Path
from typing import Any

from wardcall.config import load_config
from wardcall.demo import firmware_files
from wardcall.tls import init_ca, issue_host_certificate

CONTENT_TYPES = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data"}


def tls_records(data: bytes) -> list[tuple[int, int]]:
    """(content type, length) of every record in a stream of TLS records; AssertionError at the
    first byte that is not one (so a stream with anything else in it fails)."""
    records = []
    i = 0
    while i < len(data):
        assert len(data) - i >= 5, f"{len(data) - i} byte(s) after the last record: {data[i:i + 16]!r}"
        ctype, major, minor, length = struct.unpack(">BBBH", data[i:i + 5])
        assert ctype in CONTENT_TYPES, f"byte {i}: not a TLS record (type {ctype}): {data[i:i + 16]!r}"
        assert (major, minor) in ((3, 1), (3, 3)), f"byte {i}: TLS record version {major}.{minor}"
        assert length <= (1 << 14) + 2048, f"byte {i}: a record of {length} bytes"
        i += 5 + length
        assert i <= len(data) + 0, f"a record cut short at the end ({i - len(data)} bytes missing)"
        records.append((ctype, length))
    return records


def board_config(ward: Any, index: int = 0, **extra: Any) -> dict[str, Any]:
    """The device's config.json (as provisioned: its "tls" entry pins the ward CA), pointed at
    the test host on loopback."""
    cfg = dict(ward.device(index))
    cfg.update(host="127.0.0.1", port=ward.terminal_port, discovery_port=ward.discovery_port)
    cfg.update(extra)
    return cfg


def add_board(fleet: Any, tmp_path: Path, ward: Any, index: int = 0, **extra: Any):
    cfg = board_config(ward, index, **extra)
    return fleet.add_board(cfg["device_id"], flash_dir=tmp_path / "flash" / cfg["device_id"],
                           files=firmware_files(cfg))


def host_certificate_from_another_ca(ward: Any, folder: Path) -> None:
    """The ward's CA replaced by another (as if the CA were made again) and the host
    certificate issued by it: the terminals still pin the old one."""
    settings = load_config(ward.config_path).tls
    other = folder / "other-ca"
    other.mkdir()
    (other / "ward.toml").write_text('[ward]\nname = "Another ward"\n')
    init_ca(load_config(other / "ward.toml"))
    for name in ("ward.ca.pem", "ward.ca-key.pem"):
        shutil.copyfile(other / name, settings.ca_cert.parent / name)
    os.chmod(settings.ca_key, 0o600)
    issue_host_certificate(load_config(ward.config_path))


def expired_host_certificate(ward: Any) -> None:
    """A host certificate that ended ten minutes ago, and no CA key on the host (so it cannot
    renew it at start: the ward runs on it, alarmed)."""
    config = load_config(ward.config_path)
    now = datetime.datetime.now(datetime.timezone.utc)
    issue_host_certificate(config, now=now - datetime.timedelta(days=2), not_after=now - datetime.timedelta(minutes=10))
    config.tls.ca_key.unlink()


def host_certificate_for_another_name(ward: Any) -> None:
    """A host certificate from the ward's CA, but for other names than the terminals verify."""
    text = ward.config_path.read_text()
    ward.config_path.write_text(text + '\n[tls]\nname = "elsewhere.internal"\nalt_names = ["console.elsewhere.internal"]\n')
    issue_host_certificate(load_config(ward.config_path))
