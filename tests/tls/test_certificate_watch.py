"""The running host's certificate watch (tls.CertificateWatch, every minute in `wardcall serve`):
a renewed certificate is served without a restart, a key damaged on disk while the host runs is
issued again at the next check, and files that did not change are left as they are."""
from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest

from cryptography import x509

from wardcall import tls
from wardcall.config import load_config

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def ward(tmp_path: Path):
    (tmp_path / "ward.toml").write_text('[ward]\nname = "Watch ward"\n')
    config = load_config(tmp_path / "ward.toml")
    tls.init_ca(config)
    return config


def served_serial(context: ssl.SSLContext, ca: Path) -> int:
    """The serial number of the certificate `context` serves, from a real handshake."""
    server, client = socket.socketpair()
    client_ctx = ssl.create_default_context(cafile=str(ca))
    client_ctx.check_hostname = False
    served: dict[str, int] = {}

    def serve() -> None:
        with context.wrap_socket(server, server_side=True):
            pass

    thread = threading.Thread(target=serve)
    thread.start()
    with client_ctx.wrap_socket(client) as wrapped:
        der = wrapped.getpeercert(binary_form=True)
        served["serial"] = x509.load_der_x509_certificate(der).serial_number
    thread.join(10)
    return served["serial"]


def test_unchanged_files_are_left_alone_and_a_renewal_is_served_at_the_next_check(ward):
    host = tls.prepare_host(ward)
    watch = tls.CertificateWatch(ward.tls, ward.ward, host)
    first = tls.host_certificate(ward.tls).serial_number
    assert watch.check() == ([], None)
    assert watch.check() == ([], None)
    assert served_serial(host.terminals, ward.tls.ca_cert) == first

    tls.issue_host_certificate(ward)            # what `wardcall ca renew` does
    renewed = tls.host_certificate(ward.tls).serial_number
    notes, alarm = watch.check()
    assert alarm is None
    assert any("loaded again" in line for line in notes), notes
    assert served_serial(host.terminals, ward.tls.ca_cert) == renewed != first


def test_a_host_key_damaged_while_the_host_runs_is_issued_again_at_the_next_check(ward):
    host = tls.prepare_host(ward)
    watch = tls.CertificateWatch(ward.tls, ward.ward, host)
    assert watch.check() == ([], None)
    key = ward.tls.key
    key.write_bytes(key.read_bytes()[:200])     # cut short by a full disk
    notes, alarm = watch.check()
    assert alarm is None
    assert any("issued again" in line for line in notes), notes
    assert any("loaded again" in line for line in notes), notes
    assert tls.host_files_problem(ward.tls) is None
    served_serial(host.terminals, ward.tls.ca_cert)     # and the context serves it
    assert watch.check() == ([], None)
