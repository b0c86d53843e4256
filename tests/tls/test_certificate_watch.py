"""The running host's certificate watch (tls.CertificateWatch, every minute in `wardcall serve`):
a renewed certificate is served without a restart, a key damaged on disk while the host runs is
issued again at the next check, files that did not change are left as they are, and the loop
(every terminal's calls) goes on while a renewal makes its new key."""
from __future__ import annotations

import asyncio
import datetime
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


async def test_the_loop_goes_on_while_a_renewal_makes_its_key(ward):
    host = tls.prepare_host(ward)
    first = tls.host_certificate(ward.tls).serial_number
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    tls.issue_host_certificate(ward, not_after=soon)       # ends within renew_days: due
    assert tls.renewal_due(ward.tls)
    watch = tls.CertificateWatch(ward.tls, ward.ward, host)
    turns = 0

    async def other_work() -> None:             # what the terminals' sessions do meanwhile
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    worker = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    before = turns
    notes, alarm = await watch.check_beside_loop()
    during = turns - before
    worker.cancel()
    assert alarm is None
    assert any("renewed" in line for line in notes), notes
    assert any("loaded again" in line for line in notes), notes
    # a check on the loop's thread gives other work no turn until it returns
    assert during > 0, "the loop did nothing else while the renewal made its RSA key"
    renewed = tls.host_certificate(ward.tls).serial_number
    assert not tls.renewal_due(ward.tls)
    assert served_serial(host.terminals, ward.tls.ca_cert) == renewed != first
