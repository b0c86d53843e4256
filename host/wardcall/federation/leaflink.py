"""How a ward host (and its standby) connects to a ward's leaf node: `nats://` in clear (the
host's own leaf node on loopback), `tls://` over mutual TLS with the ward's own TLS files ([tls]
of the ward's TOML: the ward CA verifies the leaf node's certificate, and the host's certificate
from that CA is its login). A standby on a second PC that follows the primary's leaf node
straight (`standby_of`) needs that: the leaf node then listens on the ward network, and only
holders of a certificate from the ward CA may use it (natsconf.LeafNode.client_tls)."""
from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LeafTls:
    """The ward's TLS files, as [tls] names them."""
    ca_cert: Path
    cert: Path
    key: Path
    name: str              # the name on the leaf node's certificate (the ward host's, [tls] name)


def ward_leaf_tls(tls: Any) -> LeafTls:
    """From the ward's [tls] settings (config.TlsSettings)."""
    return LeafTls(Path(tls.ca_cert), Path(tls.cert), Path(tls.key), tls.name)


def connect_options(url: str, tls: LeafTls | None) -> dict[str, Any]:
    """Extra nats.connect() arguments for the leaf node at `url`: none for nats://; for
    tls://, a context that verifies the node against the ward CA and shows the host's
    certificate. Unreadable files raise OSError (ssl.SSLError is one)."""
    if not url.startswith("tls://") or tls is None:
        return {}
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca_cert))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(tls.cert), str(tls.key))
    return {"tls": context, "tls_hostname": tls.name}
