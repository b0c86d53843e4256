"""The CA every test ward of this test process shares, and a host certificate from it for the
default names (an RSA-3072 key takes a while to make: test wards copy these two).

Made when tests/conftest.py is imported, before anything imports aiohttp: SSL_CERT_FILE names
it, so this process and the host tools it starts trust it as a ward PC trusts the ward CA once
installed in its system store (`wardcall ca export`); WARDCALL_CA names it too. Chromium, which
has its own store, is told the CA's key hash instead (tests/console/conftest.py)."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

from cryptography import x509

from wardcall.config import load_config
from wardcall.tls import chain_path, init_ca, server_context, spki_sha256, terminal_settings
from wardcall.trust import ENV as TRUST_ENV

_made: dict[str, Path] = {}


def shared_ca() -> tuple[Path, Path]:
    """(CA certificate, CA key) of this test process, made once."""
    if not _made:
        folder = Path(tempfile.mkdtemp(prefix="wardcall-test-ca-"))
        atexit.register(shutil.rmtree, folder, True)
        (folder / "ca.toml").write_text('[ward]\nname = "Test wards"\n')
        config = load_config(folder / "ca.toml")
        init_ca(config)
        _made["cert"], _made["key"] = config.tls.ca_cert, config.tls.ca_key
        _made["host"], _made["host_key"], _made["chain"] = config.tls.cert, config.tls.key, chain_path(config.tls)
        _made["config"] = config
        os.environ[TRUST_ENV] = str(config.tls.ca_cert)
        os.environ["SSL_CERT_FILE"] = str(config.tls.ca_cert)
    return _made["cert"], _made["key"]


def copy_shared(settings) -> None:
    """The shared CA (its key too) and host certificate into a ward's [tls] files."""
    shared_ca()
    for src, dst in ((_made["cert"], settings.ca_cert), (_made["key"], settings.ca_key), (_made["host"], settings.cert),
                     (_made["host_key"], settings.key), (_made["chain"], chain_path(settings))):
        shutil.copyfile(src, dst)
    os.chmod(settings.ca_key, 0o600)
    os.chmod(settings.key, 0o600)


def shared_host_files() -> tuple[Path, Path]:
    """(the host certificate with the CA's after it, its key) from the shared CA: a server other
    than wardcall (the tests' nats-server hub) serves them."""
    shared_ca()
    return _made["chain"], _made["host_key"]


def shared_ca_spki() -> str:
    """The shared CA's public key hash, as Chromium's --ignore-certificate-errors-spki-list takes it."""
    cert, _ = shared_ca()
    return spki_sha256(x509.load_pem_x509_certificate(cert.read_bytes()))


def terminal_tls() -> dict:
    """The "tls" entry of a terminal's config.json that trusts the shared CA (what provision
    writes), for tests that run the firmware against a scripted host."""
    shared_ca()
    return terminal_settings(_made["config"])


def host_context():
    """A server SSLContext with the shared host certificate (a scripted host speaks TLS too)."""
    shared_ca()
    return server_context(_made["config"].tls)
