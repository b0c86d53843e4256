"""The host's certificate files as a power cut or a full disk leaves them: cut short, or a key
that is not the certificate's (the host stopped between writing the two). With the CA key on the
PC the host issues them again at its start and serves; without it, it says what to do. A
renewal writes all three files whole or not at all."""
from __future__ import annotations

import socket
import ssl
import subprocess
import sys

import pytest
from cryptography import x509

from wardcall.config import load_config
from wardcall.tls import TlsError, chain_path, issue_host_certificate, keep_host_certificate

pytestmark = [pytest.mark.timeout(90)]


def served_certificate(port: int, ca_cert, name: str) -> x509.Certificate:
    ctx = ssl.create_default_context(cafile=str(ca_cert))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=name) as s:
        return x509.load_der_x509_certificate(s.getpeercert(binary_form=True))


def test_a_host_certificate_cut_short_is_issued_again_at_the_start_and_served(make_ward, ward_server_factory):
    ward = make_ward(terminals=1)
    tls = load_config(ward.config_path).tls
    before = tls.cert.read_bytes()
    tls.cert.write_bytes(before[: len(before) // 2])         # what a power cut while writing it leaves
    server = ward_server_factory(ward)                       # ready: its console answered over HTTPS
    assert "host certificate issued again" in server.log_text() and "unreadable" in server.log_text()
    on_disk = x509.load_pem_x509_certificate(tls.cert.read_bytes())
    on_disk.verify_directly_issued_by(x509.load_pem_x509_certificate(tls.ca_cert.read_bytes()))
    assert served_certificate(ward.terminal_port, tls.ca_cert, "wardcall.internal") == on_disk
    assert served_certificate(ward.api_port, tls.ca_cert, "127.0.0.1") == on_disk


def test_a_key_that_is_not_the_certificates_is_issued_again(make_ward):
    ward_cfg = load_config(make_ward(terminals=0).config_path)
    tls = ward_cfg.tls
    # the key renewed, the certificate not (the host stopped between the two)
    old_cert = tls.cert.read_bytes()
    issue_host_certificate(ward_cfg)
    tls.cert.write_bytes(old_cert)
    notes = keep_host_certificate(tls, ward_cfg.ward)
    assert any("issued again" in n and "does not belong" in n for n in notes), notes
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tls.cert, tls.key)
    ctx.load_cert_chain(chain_path(tls), tls.key)


def test_a_chain_file_cut_short_is_issued_again(make_ward):
    ward_cfg = load_config(make_ward(terminals=0).config_path)
    tls = ward_cfg.tls
    chain = chain_path(tls)
    chain.write_bytes(chain.read_bytes()[:100])
    notes = keep_host_certificate(tls, ward_cfg.ward)
    assert any("issued again" in n for n in notes), notes
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(chain, tls.key)


def test_without_the_ca_key_a_broken_certificate_is_a_clear_error_at_the_start(make_ward):
    ward = make_ward(terminals=1)
    tls = load_config(ward.config_path).tls
    tls.ca_key.rename(tls.ca_key.with_name("ca-key-kept-elsewhere.pem"))
    tls.cert.write_bytes(b"")
    with pytest.raises(TlsError, match="wardcall ca renew"):
        keep_host_certificate(tls, "Test ward")
    done = subprocess.run([sys.executable, "-m", "wardcall.cli", "serve", "--config", str(ward.config_path)],
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    assert done.returncode == 2, done.stderr
    assert b"host certificate is unreadable" in done.stderr and b"wardcall ca renew" in done.stderr
    assert b"Traceback" not in done.stderr


def test_a_renewal_leaves_no_partial_file_and_each_file_whole(make_ward):
    ward_cfg = load_config(make_ward(terminals=0).config_path)
    tls = ward_cfg.tls
    issue_host_certificate(ward_cfg)
    folder = tls.cert.parent
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    cert = x509.load_pem_x509_certificate(tls.cert.read_bytes())
    chained = x509.load_pem_x509_certificates(chain_path(tls).read_bytes())
    assert chained[0] == cert
    assert oct(tls.key.stat().st_mode & 0o777) == "0o600"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tls.cert, tls.key)
