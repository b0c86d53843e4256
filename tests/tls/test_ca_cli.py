"""`wardcall ca`: init (the key 0600, a real CA, never made twice), export (PEM and DER, the same
certificate as the terminals pin), renew (a new key and certificate, valid from the CA's own
start) and show, and the host's certificate as served."""
from __future__ import annotations

import base64
import datetime
import json
import socket
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from wardcall.config import load_config

pytestmark = [pytest.mark.timeout(60)]


def wardcall(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wardcall.cli", *args], capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=30)


@pytest.fixture
def ward_toml(tmp_path: Path) -> Path:
    path = tmp_path / "ward.toml"
    path.write_text('[ward]\nname = "Ward 7"\n[rooms.101]\nbeds = ["1"]\n[tls]\nalt_names = ["ward7-pc", "192.168.10.5"]\n')
    return path


def test_init_makes_a_ca_with_a_private_key_and_a_host_certificate_from_it(ward_toml):
    done = wardcall("ca", "init", "--config", str(ward_toml))
    assert done.returncode == 0, done.stderr
    tls = load_config(ward_toml).tls
    assert stat.S_IMODE(tls.ca_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(tls.key.stat().st_mode) == 0o600
    ca = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
    host = x509.load_pem_x509_certificate(tls.cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    host.verify_directly_issued_by(ca)
    names = host.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["wardcall.internal", "ward7-pc"]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["192.168.10.5"]
    # valid from the CA's own start: a terminal's clock is never set earlier than that
    assert host.not_valid_before_utc == ca.not_valid_before_utc
    assert host.public_key().key_size == ca.public_key().key_size == 3072
    # a second init would orphan every terminal that pins the first CA: refused
    again = wardcall("ca", "init", "--config", str(ward_toml))
    assert again.returncode == 2 and b"already has a CA" in again.stderr and b"Traceback" not in again.stderr
    assert x509.load_pem_x509_certificate(tls.ca_cert.read_bytes()) == ca


def test_export_writes_the_pinned_ca_as_pem_and_der(ward_toml, tmp_path):
    assert wardcall("provision", "--config", str(ward_toml), "--device", "bed-101-1", "--room", "101", "--bed", "1",
                    "--out", str(tmp_path / "board")).returncode == 0       # makes the CA: the ward's first terminal
    pinned = base64.b64decode(json.loads((tmp_path / "board" / "config.json").read_text())["tls"]["ca"])
    pem = wardcall("ca", "export", "--config", str(ward_toml))
    assert pem.returncode == 0 and pem.stdout.startswith(b"-----BEGIN CERTIFICATE-----")
    assert x509.load_pem_x509_certificate(pem.stdout) == x509.load_der_x509_certificate(pinned)
    assert b"SHA-256" in pem.stderr
    der = wardcall("ca", "export", "--config", str(ward_toml), "--der", "--out", str(tmp_path / "ward-ca.der"))
    assert der.returncode == 0, der.stderr
    assert (tmp_path / "ward-ca.der").read_bytes() == pinned


def test_renew_gives_a_new_key_and_certificate_from_the_same_ca(ward_toml):
    assert wardcall("ca", "init", "--config", str(ward_toml)).returncode == 0
    tls = load_config(ward_toml).tls
    first, first_key = tls.cert.read_bytes(), tls.key.read_bytes()
    done = wardcall("ca", "renew", "--config", str(ward_toml))
    assert done.returncode == 0, done.stderr
    assert tls.cert.read_bytes() != first and tls.key.read_bytes() != first_key
    ca = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
    x509.load_pem_x509_certificate(tls.cert.read_bytes()).verify_directly_issued_by(ca)
    shown = wardcall("ca", "show", "--config", str(ward_toml))
    assert shown.returncode == 0 and b"396 day(s) left" in shown.stdout and b"terminals verify wardcall.internal" in shown.stdout


def test_without_a_ca_export_says_how_to_make_one(ward_toml):
    done = wardcall("ca", "export", "--config", str(ward_toml))
    assert done.returncode == 2 and b"wardcall ca init" in done.stderr and b"Traceback" not in done.stderr


def test_terminals_and_console_are_served_over_tls_1_2_or_newer_with_the_ward_certificate(make_ward, ward_server_factory):
    ward = make_ward(terminals=1)
    ward_server_factory(ward)
    tls = load_config(ward.config_path).tls
    ctx = ssl.create_default_context(cafile=str(tls.ca_cert))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2

    def served(port: int, name: str) -> tuple[str, bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=name) as s:
            return s.version(), s.getpeercert(binary_form=True)
    for port, name in ((ward.terminal_port, "wardcall.internal"), (ward.api_port, "127.0.0.1")):
        version, der = served(port, name)
        assert version in ("TLSv1.2", "TLSv1.3")
        assert x509.load_der_x509_certificate(der) == x509.load_pem_x509_certificate(tls.cert.read_bytes())
    assert datetime.datetime.now(datetime.timezone.utc) < x509.load_pem_x509_certificate(tls.cert.read_bytes()).not_valid_after_utc


def test_the_hospital_console_has_its_own_ca_the_same_way(tmp_path: Path):
    from wardcall.federation.demo import hospital_toml
    from wardcall.federation.hospital_config import load_hospital
    path = tmp_path / "hospital.toml"
    path.write_text(hospital_toml("nats://127.0.0.1:4222", 7480) + '\n[tls]\nalt_names = ["house-pc"]\n')
    done = wardcall("ca", "init", "--config", str(path))
    assert done.returncode == 0, done.stderr
    assert b"hospital console CA created" in done.stdout and b"terminals get it" not in done.stdout
    tls = load_hospital(path).tls
    assert stat.S_IMODE(tls.ca_key.stat().st_mode) == 0o600
    host = x509.load_pem_x509_certificate(tls.cert.read_bytes())
    names = host.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert "house-pc" in names
    exported = wardcall("ca", "export", "--config", str(path))
    assert exported.returncode == 0 and exported.stdout == tls.ca_cert.read_bytes()
    shown = wardcall("ca", "show", "--config", str(path))
    assert b"hospital console CA" in shown.stdout and b"console: https" in shown.stdout and b"terminals" not in shown.stdout
    again = wardcall("ca", "init", "--config", str(path))
    assert again.returncode == 2 and b"already has a CA" in again.stderr
