"""Which certificate authorities this process's clients of the console API trust: the system's,
plus the ward CA of every ward TOML this process read (`trust_ward`), plus the file named by the
environment variable WARDCALL_CA (a CA installed for host tools, as `wardcall ca export` writes
it). Used by HostApi (status, deploy, update) and WardApi."""
from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import WardConfig

ENV = "WARDCALL_CA"
_trusted: list[Path] = []


def trust(path: Path) -> None:
    if path not in _trusted:
        _trusted.append(path)


def trust_ward(config: "WardConfig") -> None:
    """Trust the ward's CA (when its console is served over HTTPS)."""
    if config.tls.console == "https":
        trust(config.tls.ca_cert)


def client_context() -> ssl.SSLContext:
    """A client context: the system's CAs and the trusted ward CAs (missing files skipped)."""
    ctx = ssl.create_default_context()
    paths = list(_trusted)
    if os.environ.get(ENV):
        paths.append(Path(os.environ[ENV]))
    for path in paths:
        try:
            ctx.load_verify_locations(cafile=str(path))
        except (OSError, ssl.SSLError):
            continue
    return ctx
