"""The bridge to the host's configuration and provisioning code (wardcall.config, wardcall.devicekeys,
wardcall.provision). Deploy never reads the ward TOML or the secrets file itself.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DeployError

if TYPE_CHECKING:
    from wardcall.config import WardConfig


def load_ward(path: str | Path) -> WardConfig:
    from wardcall.config import ConfigError, load_config
    try:
        return load_config(path)
    except ConfigError as e:
        raise DeployError("ward configuration: %s" % e, code="config",
                          fix="fix the ward TOML (%s)" % path)


def host_url(ward: WardConfig) -> str:
    """The host's HTTP API as seen from this machine (a wildcard bind means loopback); over
    HTTPS the ward's CA is trusted from here on (wardcall.trust)."""
    from wardcall.trust import trust_ward
    trust_ward(ward)
    host = ward.network.api_host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = "[%s]" % host
    scheme = "https" if ward.tls.console == "https" else "http"
    return "%s://%s:%d" % (scheme, host, ward.network.api_port)


def not_provisioned(ward: WardConfig, device: str, why: str) -> DeployError:
    known = sorted(ward.terminals)
    return DeployError(
        "device %s is not provisioned in %s: %s" % (device, ward.path, why),
        code="not-provisioned",
        fix="provision it first: wardcall provision --config %s --device %s ...%s"
        % (ward.path, device, ("  (known devices: %s)" % ", ".join(known[:8]) +
                               (" ..." if len(known) > 8 else "")) if known else ""),
    )


def device_config(ward: WardConfig, device: str, wifi_ssid: str = "", wifi_password: str = "",
                  host: str | None = None, standby_host: str | None = None) -> dict[str, Any]:
    """The device's config.json as `wardcall provision` writes it: wardcall.provision.board_config
    with the key from the secrets file (wardcall.devicekeys.load_keys)."""
    from wardcall.config import ConfigError
    from wardcall.provision import board_config, standby_address
    from wardcall.devicekeys import load_keys
    try:
        standby = standby_address(standby_host, host, ward.network.terminal_port)
    except ValueError as e:
        raise DeployError(str(e), code="usage", fix="give --terminal-host with --standby-host")
    if device not in ward.terminals:
        raise not_provisioned(ward, device, "no [terminals.%s] in the ward configuration" % device)
    try:
        keys = load_keys(ward.secrets)
    except ConfigError as e:
        raise DeployError("device keys: %s" % e, code="config", fix="fix %s" % e.path)
    if device not in keys:
        raise not_provisioned(ward, device, "no key for it in %s" % ward.secrets)
    return board_config(ward, device, keys[device].hex(), wifi_ssid, wifi_password, host, standby)


def ota_key(ward: WardConfig) -> str | None:
    """The text of the board's update key file from the ward's public key ([ota] public_key),
    or None if the ward has no update key yet."""
    from wardcall.ota.errors import OtaError
    from wardcall.ota.signing import board_key_text, load_public_key
    if not ward.ota.public_key.exists():
        return None
    try:
        return board_key_text(load_public_key(ward.ota.public_key))
    except OtaError as e:
        raise DeployError("update key: %s" % e, code="config",
                          fix="make it with `wardcall update keygen --config %s`" % ward.path)
