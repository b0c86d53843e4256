"""Served over TLS, the console's session cookie is Secure and browsers are told to keep to HTTPS;
over plain HTTP the cookie cannot be Secure (the browser would drop it). The real application
(wardcall.web.make_app) on a real TLS socket with a certificate made here."""
from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.fixtures.host import NURSE, _NURSE_HASH
from wardcall.clock import SystemClock
from wardcall.config import parse_config
from wardcall.hub import WardHub
from wardcall.storage import AsyncWriter, Storage
from wardcall.web import make_app

pytestmark = [pytest.mark.timeout(60)]


def self_signed(tmp: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    return ctx


async def serve(tmp: Path, tls: bool):
    config = parse_config(tmp / "ward.toml", {
        "ward": {"name": "W", "database": "ward.db"},
        "rooms": {"101": {"beds": ["1"]}},
        "users": {NURSE[0]: {"password": _NURSE_HASH}},
    })
    writer = AsyncWriter(Storage(config.database))
    hub = WardHub(config, {}, writer, SystemClock())
    runner = web.AppRunner(make_app(hub))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self_signed(tmp) if tls else None)
    await site.start()
    port = runner.addresses[0][1]
    return runner, writer, f"{'https' if tls else 'http'}://127.0.0.1:{port}"


@pytest.mark.parametrize("tls", [True, False])
async def test_the_session_cookie_is_secure_whenever_the_console_is_served_over_tls(tmp_path, tls):
    runner, writer, url = await serve(tmp_path, tls)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(url + "/api/login", json={"user": NURSE[0], "password": NURSE[1]},
                                 headers={"Origin": url}, ssl=False) as r:
                assert r.status == 200, await r.text()
                cookie = r.cookies["wardcall_session"]
                assert bool(cookie["secure"]) is tls
                assert cookie["httponly"] and cookie["samesite"] == "Strict"
                assert ("Strict-Transport-Security" in r.headers) is tls
    finally:
        await runner.cleanup()
        await writer.aclose()
