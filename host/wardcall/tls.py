"""The ward's certificate authority and the host's TLS certificate (docs/PROTOCOL.md section 13,
docs/HOST.md "TLS").

`wardcall ca init` makes the ward CA (RSA-3072, 20 years; its key mode 0600) and a host
certificate from it (RSA-3072: the terminal only verifies, and RSA verification costs it far
less than ECDSA's, docs/PROTOCOL.md section 13); `wardcall provision` pins the CA in each terminal's config.json; `wardcall
ca export` writes the CA for ward PCs and phones; the host renews its own certificate at start
when it ends within `renew_days` (a new key each time: the terminals pin the CA, not the key).

Every host certificate is valid from the CA's own creation: a terminal's clock is never set
earlier than its provisioning time (which is after the CA's creation), so a certificate can never
look "not yet valid" to a terminal whose clock was lost (firmware/lib/tlslink.py).
"""
from __future__ import annotations

import asyncio
import asyncio.sslproto
import base64
import datetime
import hashlib
import ipaddress
import logging
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .config import TlsSettings, WardConfig
from .files import replace_together

CA_YEARS = 20
KEY_BITS = 3072                              # RSA, e = 65537: the ward's update key's level too
# TLS 1.2 suites with forward secrecy only (ECDHE); TLS 1.3 has nothing else
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
CLOCK_SKEW = datetime.timedelta(hours=1)     # the CA is valid from an hour before its creation
# Each asyncio TLS connection has a read buffer of this size (docs/BENCHMARKS.md, "TLS read buffers")
TLS_READ_BUFFER = 16 * 1024
PRIVATE_MODE, PUBLIC_MODE = 0o600, 0o644     # keys; certificates


class TlsError(Exception):
    """A CA or certificate problem: one line saying what and what to do."""


@dataclass(frozen=True)
class CertInfo:
    subject: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    sha256: str                  # the certificate's fingerprint, colon-separated hex
    spki_sha256: str             # base64 SHA-256 of its public key (Chromium's SPKI pin form)
    names: tuple[str, ...]

    def text(self) -> str:
        return (f"{self.subject}: valid {self.not_before:%Y-%m-%d} to {self.not_after:%Y-%m-%d}; "
                f"SHA-256 {self.sha256}")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, KEY_BITS)


def _key_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def spki_sha256(cert: x509.Certificate) -> str:
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def info(cert: x509.Certificate) -> CertInfo:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple([*san.get_values_for_type(x509.DNSName), *(str(a) for a in san.get_values_for_type(x509.IPAddress))])
    except x509.ExtensionNotFound:
        names = ()
    digest = cert.fingerprint(hashes.SHA256()).hex().upper()
    return CertInfo(cert.subject.rfc4514_string(), cert.not_valid_before_utc, cert.not_valid_after_utc,
                    ":".join(digest[i:i + 2] for i in range(0, len(digest), 2)), spki_sha256(cert), names)


def _read_cert(path: Path, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise TlsError(f"{path}: no {what} (make one with: wardcall ca init --config <ward.toml>)") from None
    except (OSError, ValueError) as exc:
        raise TlsError(f"{path}: the {what} is unreadable: {exc}") from None


def _check_private(path: Path, what: str) -> None:
    """A key readable by others is an operator's to look at (who read it?), not one to mend."""
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        raise TlsError(f"{path}: no {what}") from None
    except OSError as exc:
        raise TlsError(f"{path}: the {what} is unreadable: {exc}") from None
    if mode & 0o077:
        raise TlsError(f"{path}: the {what} must be readable only by its owner (mode 0600), not {mode:04o}; "
                       f"run: chmod 600 {path}")


def _read_key(path: Path, what: str) -> rsa.RSAPrivateKey:
    _check_private(path, what)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise TlsError(f"{path}: no {what}") from None
    except (OSError, ValueError, TypeError) as exc:
        raise TlsError(f"{path}: the {what} is unreadable: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TlsError(f"{path}: the {what} is not an RSA key")
    return key


def chain_path(settings: TlsSettings) -> Path:
    """The host certificate followed by the CA's, for the console: a browser that pins the CA's
    key (Chromium's --ignore-certificate-errors-spki-list) needs the CA in the chain. Terminals
    get the host certificate alone: mbedTLS would parse the CA again, on the board's heap."""
    return settings.cert.with_name(settings.cert.stem + ".chain.pem")


def ca_certificate(settings: TlsSettings) -> x509.Certificate:
    return _read_cert(settings.ca_cert, "ward CA certificate")


def host_certificate(settings: TlsSettings) -> x509.Certificate:
    return _read_cert(settings.cert, "host certificate")


def host_names(settings: TlsSettings) -> list[str]:
    """What the host certificate names: the terminals' name, then the console's (alt_names, or
    this machine's name, localhost and 127.0.0.1 when none are given)."""
    extra = list(settings.alt_names) or [socket.gethostname(), "localhost", "127.0.0.1"]
    names: list[str] = []
    for n in [settings.name, *extra]:
        if n and n not in names:
            names.append(n)
    return names


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for n in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            entries.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(entries)


def issue_host_certificate(config: WardConfig, now: datetime.datetime | None = None,
                           not_after: datetime.datetime | None = None) -> CertInfo:
    """A new host key and certificate from the ward CA (written 0600 / 0644); returns its info.
    `now`/`not_after` exist for tests that need an expired or short-lived certificate."""
    return issue_certificate(config.tls, config.ward, now, not_after)


def issue_certificate(settings: TlsSettings, owner: str, now: datetime.datetime | None = None,
                      not_after: datetime.datetime | None = None) -> CertInfo:
    """issue_host_certificate for any [tls] table: the ward's, or the hospital console's (owner:
    the organisation named in the certificate)."""
    ca = ca_certificate(settings)
    ca_key = _read_key(settings.ca_key, "ward CA key")
    now = now or _now()
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, settings.name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, owner[:64])])
    end = not_after or now + datetime.timedelta(days=settings.cert_days)
    end = min(end, ca.not_valid_after_utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(min(ca.not_valid_before_utc, now)).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, content_commitment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(_san(host_names(settings)), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    # all three written in full before any is renamed into place: a full disk leaves the old
    # ones; a stop between the renames leaves a key that is not the certificate's, which the
    # next start finds (host_files_problem) and mends
    pem = cert.public_bytes(serialization.Encoding.PEM)
    replace_together([(settings.cert, pem, PUBLIC_MODE),
                      (chain_path(settings), pem + ca.public_bytes(serialization.Encoding.PEM), PUBLIC_MODE),
                      (settings.key, _key_pem(key), PRIVATE_MODE)])
    return info(cert)


def init_ca(config: WardConfig) -> tuple[CertInfo, CertInfo]:
    """The ward CA and a first host certificate. Refuses to replace an existing CA: every
    terminal pins it, so a new one means deploying every terminal again."""
    return create_ca(config.tls, config.ward)


def create_ca(settings: TlsSettings, owner: str) -> tuple[CertInfo, CertInfo]:
    """init_ca for any [tls] table (owner: the ward's or the hospital's name)."""
    for path in (settings.ca_cert, settings.ca_key):
        if path.exists():
            raise TlsError(f"{path} exists: the ward already has a CA, and every terminal pins it. To start over "
                           "(and deploy every terminal again), move the CA's files away first")
    key = _new_key()
    now = _now()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{owner[:48]} wardcall CA"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, owner[:64])])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + datetime.timedelta(days=365 * CA_YEARS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, key_encipherment=False, content_commitment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    settings.ca_key.parent.mkdir(parents=True, exist_ok=True)
    replace_together([(settings.ca_key, _key_pem(key), PRIVATE_MODE),
                      (settings.ca_cert, cert.public_bytes(serialization.Encoding.PEM), PUBLIC_MODE)])
    return info(cert), issue_certificate(settings, owner)


def export_ca(settings: TlsSettings, form: str) -> bytes:
    """The CA certificate as PEM or DER, for installing on ward PCs and phones."""
    cert = ca_certificate(settings)
    encoding = serialization.Encoding.DER if form == "der" else serialization.Encoding.PEM
    return cert.public_bytes(encoding)


def terminal_settings(config: WardConfig) -> dict[str, object] | str:
    """The "tls" entry of a terminal's config.json: the pinned CA (base64 DER), the name to
    verify and the time floor (the CA's creation), or "plain" for a bench ward."""
    if config.tls.terminals == "plain":
        return "plain"
    ca = ca_certificate(config.tls)
    # the floor is the CA's creation, not the provisioning time: a lower bound of the time all
    # the same, and the same at every provisioning, so deploying a board again finds its
    # config.json up to date instead of rewriting it
    return {"name": config.tls.name,
            "ca": base64.b64encode(ca.public_bytes(serialization.Encoding.DER)).decode(),
            "time_floor": int((ca.not_valid_before_utc + CLOCK_SKEW).timestamp())}


def renewal_due(settings: TlsSettings, now: datetime.datetime | None = None) -> bool:
    cert = host_certificate(settings)
    return cert.not_valid_after_utc - (now or _now()) <= datetime.timedelta(days=settings.renew_days)


def server_context(settings: TlsSettings, chain: bool = False) -> ssl.SSLContext:
    """The host's side: its certificate (with the CA's after it for the console), TLS 1.2 or newer."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHERS)
    try:
        ctx.load_cert_chain(chain_path(settings) if chain else settings.cert, settings.key)
    except FileNotFoundError:
        raise TlsError(f"{settings.cert}: no host certificate (make one with: wardcall ca init --config <ward.toml>, "
                       "or wardcall ca renew if the CA exists)") from None
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"{settings.cert}: the host certificate or its key is unusable: {exc}") from None
    return ctx


def bound_tls_read_buffers(size: int = TLS_READ_BUFFER) -> None:
    """Give every TLS connection through asyncio's own layer (the console's HTTPS, the host's
    clients) a read buffer of `size` bytes. By default asyncio (Python 3.11's, at least) gives
    each one 256 KiB and zeroes it when the connection is made. When the terminals' TLS still
    went through it, at 5,000 terminals that was 1.3 GB, and the zeroing was a seventh of the
    host's CPU samples while 5,000 connected and then all reconnected at once (the terminals'
    connections now go through tls_layer, which holds no such buffer). A frame is a few
    hundred bytes. A smaller buffer only means that a large request body, such as an update
    package, takes more reads. The buffer's size is a class attribute, so this sets it for the
    whole process."""
    asyncio.sslproto.SSLProtocol.max_size = size


def client_context(settings: TlsSettings) -> ssl.SSLContext:
    """A client that trusts the ward CA only (host tools: status, deploy, update)."""
    ctx = ssl.create_default_context(cafile=str(settings.ca_cert))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def console_url(config: WardConfig, host: str | None = None, port: int | None = None) -> str:
    net = config.network
    scheme = "https" if config.tls.console == "https" else "http"
    host = host or net.api_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"{scheme}://{host}:{port if port is not None else net.api_port}"


# ----- the host at start and while it runs -----

PLAIN_TERMINALS_ALARM = "tls:plain-terminals"
PLAIN_CONSOLE_ALARM = "tls:plain-console"
CERT_ALARM = "tls:host-certificate"


@dataclass
class HostTls:
    """What serve needs: the server contexts (None where TLS is off), lines to log, and standing
    alarms (id -> text)."""
    terminals: ssl.SSLContext | None
    console: ssl.SSLContext | None
    notes: list[str]
    alarms: dict[str, str]


def _certificate_alarm(settings: TlsSettings, now: datetime.datetime) -> str | None:
    cert = host_certificate(settings)
    end = cert.not_valid_after_utc
    if end - now > datetime.timedelta(days=settings.renew_days):
        return None
    how = "ended" if end <= now else "ends"
    return (f"the host's TLS certificate {how} {end:%Y-%m-%d %H:%M} UTC and could not be renewed here "
            f"(no CA key at {settings.ca_key}): renew it with `wardcall ca renew` where the CA key is")


def host_files_problem(settings: TlsSettings) -> str | None:
    """Why the host certificate, its chain and its key on disk cannot be served together (a
    file cut short by a power cut or a full disk, a key that is not the certificate's), or None.
    A key readable by others is raised as a TlsError instead: that is not for the host to mend."""
    _check_private(settings.key, "host key")
    try:
        cert = host_certificate(settings)
        key = _read_key(settings.key, "host key")
    except TlsError as exc:
        return str(exc)
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        return f"{settings.key}: the host key does not belong to the certificate {settings.cert}"
    chain = chain_path(settings)
    if not chain.exists():
        return None         # a certificate from before the chain file (_kept_with_chain)
    try:
        first = x509.load_pem_x509_certificates(chain.read_bytes())[0]
    except (OSError, ValueError) as exc:
        return f"{chain}: the host certificate's chain is unreadable: {exc}"
    if first != cert:
        return f"{chain}: the chain does not begin with the host certificate {settings.cert}"
    return None


def keep_host_certificate(settings: TlsSettings, owner: str, now: datetime.datetime | None = None) -> list[str]:
    """Issue the host certificate if it is missing or cannot be served (host_files_problem),
    renew it if it ends within renew_days (either only where the CA key is). Returns what it
    did, as lines to log."""
    now = now or _now()
    notes = []
    if not settings.cert.exists() or not settings.key.exists():
        if not settings.ca_key.exists():
            raise TlsError(f"{settings.cert}: no host certificate, and no CA key at {settings.ca_key} to make one: "
                           "run `wardcall ca renew` where the CA key is and copy the certificate and its key here")
        notes.append(f"host certificate issued: {issue_certificate(settings, owner).text()}")
        return notes
    problem = host_files_problem(settings)
    if problem is not None:
        if not settings.ca_key.exists():
            raise TlsError(f"{problem}; no CA key at {settings.ca_key} to issue it again: run `wardcall ca renew` "
                           "where the CA key is and copy the certificate, its chain and its key here")
        notes.append(f"host certificate issued again, the one here could not be served ({problem}): "
                     f"{issue_certificate(settings, owner).text()}")
    elif renewal_due(settings, now) and settings.ca_key.exists():
        notes.append(f"host certificate renewed: {issue_certificate(settings, owner).text()}")
    return notes


def prepare_host(config: WardConfig) -> HostTls:
    settings = config.tls
    alarms: dict[str, str] = {}
    notes: list[str] = []
    if settings.terminals == "plain":
        alarms[PLAIN_TERMINALS_ALARM] = ("terminals connect over plain TCP ([tls] terminals = \"plain\"): calls, staff "
                                         "names and badge ids cross the Wi-Fi in clear; a bench setting, not for a ward")
    if settings.console == "http":
        alarms[PLAIN_CONSOLE_ALARM] = ("the console is served over plain HTTP ([tls] console = \"http\"): logins and "
                                       "the ward's calls cross the network in clear; a bench setting, not for a ward")
    if settings.terminals == "plain" and settings.console == "http":
        return HostTls(None, None, notes, alarms)
    if not settings.ca_cert.exists():
        if config.terminals and settings.terminals == "tls":
            raise TlsError(f"{settings.ca_cert}: the ward CA is missing, but {len(config.terminals)} terminal(s) pin it: "
                           "restore it (and its key) from a backup, or make a new one with `wardcall ca init` and "
                           "deploy every terminal again")
        ca, host = init_ca(config)
        notes.append(f"ward CA created: {ca.text()} (install it on ward PCs and phones: wardcall ca export)")
        notes.append(f"host certificate issued: {host.text()}")
    notes += _kept_with_chain(settings, config.ward)
    text = _certificate_alarm(settings, _now())
    if text:
        alarms[CERT_ALARM] = text
    return HostTls(server_context(settings) if settings.terminals == "tls" else None,
                   server_context(settings, chain=True) if settings.console == "https" else None, notes, alarms)


def _kept_with_chain(settings: TlsSettings, owner: str) -> list[str]:
    notes = keep_host_certificate(settings, owner)
    if not chain_path(settings).exists():        # a certificate from before the chain file: renew it
        notes.append(f"host certificate issued again (with its chain): {issue_certificate(settings, owner).text()}")
    return notes


def prepare_console(settings: TlsSettings, owner: str) -> HostTls:
    """prepare_host for a console that no terminal connects to (the hospital console,
    docs/FEDERATION.md): its own CA made at the first start, as a ward's; console = "http" is
    a bench setting, alarmed."""
    if settings.console == "http":
        return HostTls(None, None, [], {PLAIN_CONSOLE_ALARM: (
            "the console is served over plain HTTP ([tls] console = \"http\"): logins and every ward's "
            "calls cross the network in clear; a bench setting, not for a hospital")})
    notes: list[str] = []
    if not settings.ca_cert.exists():
        ca, host = create_ca(settings, owner)
        notes.append(f"console CA created: {ca.text()} (install it on the PCs and phones that open the console: "
                     "wardcall ca export)")
        notes.append(f"console certificate issued: {host.text()}")
    notes += _kept_with_chain(settings, owner)
    alarms: dict[str, str] = {}
    text = _certificate_alarm(settings, _now())
    if text:
        alarms[CERT_ALARM] = text
    return HostTls(None, server_context(settings, chain=True), notes, alarms)


class CertificateWatch:
    """Every check(): renew the host certificate when due (and the CA key is here) and load a
    changed certificate into the running context, so `wardcall ca renew` needs no restart.

    Whether the files can be served together (host_files_problem) is looked at again only when
    they changed since it last found them fine, or a renewal is due: reading the RSA key checks
    it, about 100 ms of the loop with the GIL held, which every minute was the host's longest
    stall in steady state (BENCHMARKS.md, "The certificate check"). In `run` that file work
    (mend) goes to a thread: a renewal's RSA-3072 key takes 0.1-2 s to find, with the GIL
    released, and the calls go on meanwhile; the running contexts are changed on the loop only,
    where the terminals' sessions are made from them."""

    def __init__(self, settings: TlsSettings, owner: str, host: HostTls) -> None:
        self.settings = settings
        self.owner = owner
        self.host = host
        self._stamp = self._files()         # the files the running context was loaded from
        self._fine = self._stamp            # the files last found servable (by prepare_host)

    def _files(self) -> tuple[float, float, float]:
        s = self.settings
        try:
            return s.cert.stat().st_mtime, s.key.stat().st_mtime, chain_path(s).stat().st_mtime
        except OSError:
            return 0.0, 0.0, 0.0

    def check(self) -> tuple[list[str], str | None]:
        """(lines to log, the certificate alarm's text or None once it is fine), all in this thread."""
        notes = self.mend()
        return notes + self.load_changed(), self.alarm()

    async def check_beside_loop(self) -> tuple[list[str], str | None]:
        """check(), its file work (mend) in a thread while the loop goes on."""
        notes = await asyncio.to_thread(self.mend)
        return notes + self.load_changed(), self.alarm()

    def mend(self) -> list[str]:
        """The files issued again if they cannot be served, renewed if due; touches no running
        context, so it may run in any one thread at a time."""
        s = self.settings
        try:
            if self._fine != self._files() or (renewal_due(s) and s.ca_key.exists()):
                notes = keep_host_certificate(s, self.owner)
                self._fine = self._files()
                return notes
        except TlsError as exc:
            return [str(exc)]
        return []

    def load_changed(self) -> list[str]:
        """Changed files loaded into the running contexts (on the loop's thread)."""
        s = self.settings
        stamp = self._files()
        if stamp == self._stamp:
            return []
        try:
            if self.host.terminals is not None:
                self.host.terminals.load_cert_chain(s.cert, s.key)
            if self.host.console is not None:
                self.host.console.load_cert_chain(chain_path(s), s.key)
            self._stamp = stamp
            return [f"host certificate loaded again: {info(host_certificate(s)).text()}"]
        except (OSError, ssl.SSLError, TlsError) as exc:
            return [f"the changed host certificate is unusable, the previous one stays: {exc}"]

    def alarm(self) -> str | None:
        try:
            return _certificate_alarm(self.settings, _now())
        except TlsError as exc:
            return str(exc)

    async def run(self, every_s: float, report: Callable[[str | None], Awaitable[None]], log: logging.Logger) -> None:
        """check_beside_loop() every `every_s` for ever: its lines logged, its alarm (or None
        once the certificate is fine) given to `report`; a failed check is logged and the
        running certificate stays."""
        while True:
            await asyncio.sleep(every_s)
            try:
                notes, alarm = await self.check_beside_loop()
                for line in notes:
                    log.warning("%s", line)
                await report(alarm)
            except Exception:
                log.exception("checking the host certificate failed")
