"""The ward's update signing key: made by `wardcall update keygen`, used by `wardcall update` (the
technician's side) to sign a package, and its public half used by the server (to refuse a package
before any transfer) and by deploy (installed on every terminal, which checks every update).

RSASSA-PKCS1-v1_5 with SHA-256 over otaproto.statement(); the key is RSA-3072, e = 65537
(docs/PROTOCOL.md section 12.1 says why). Signing and host-side verification use `cryptography`;
the terminals verify with otaproto.verify, checked against the same vectors.
"""
from __future__ import annotations

import stat
import time
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..devicekeys import write_private
from ..files import write_atomically
from ..protocol import otaproto
from .errors import OtaError
from .package import Package

PublicKey = rsa.RSAPublicKey
PrivateKey = rsa.RSAPrivateKey


def key_id(public_key: PublicKey) -> str:
    return otaproto.key_id(public_key.public_numbers().n)


def board_key_text(public_key: PublicKey) -> str:
    """What `wardcall deploy` writes to the terminal's otaproto.KEY_FILE."""
    return otaproto.key_text(public_key.public_numbers().n) + "\n"


def generate_keys(private_path: Path, public_path: Path) -> str:
    """A new RSA-3072 key pair: the private key PEM (mode 0600 from its first byte), the public
    key PEM beside it. Refuses to replace an existing key. Returns the key id."""
    for path in (private_path, public_path):
        if path.exists():
            raise OtaError(f"{path} already exists: the ward has an update key. A new key means deploying "
                           "every terminal again (wardcall deploy); remove the old files first if that is what you want")
    key = rsa.generate_private_key(public_exponent=otaproto.E, key_size=otaproto.KEY_BITS)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    write_private(private_path, pem.decode())
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_id(key.public_key())


def load_private_key(path: Path) -> PrivateKey:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise OtaError(f"no signing key at {path}: make the ward's key pair with "
                       "`wardcall update keygen --config WARD.toml` (or set [ota] private_key)") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise OtaError(f"the signing key {path} must be readable only by its owner (mode 0600), "
                       f"not {stat.S_IMODE(mode):04o}; run: chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise OtaError(f"cannot read the signing key {path}: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.public_key().public_numbers().e != otaproto.E \
            or not otaproto.MIN_KEY_LEN <= (key.key_size + 7) // 8 <= otaproto.MAX_KEY_LEN:
        raise OtaError(f"{path} is not an RSA update key (2048-4096 bits, e = 65537)")
    return key


def load_public_key(path: Path) -> PublicKey:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise OtaError(f"this ward has no update key ({path} does not exist): make it with "
                       "`wardcall update keygen --config WARD.toml`, then deploy the terminals") from None
    except OSError as exc:
        raise OtaError(f"cannot read the update public key {path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise OtaError(f"{path} is not a PEM public key: {exc}") from None
    if not isinstance(key, rsa.RSAPublicKey) or key.public_numbers().e != otaproto.E \
            or not otaproto.MIN_KEY_LEN <= (key.key_size + 7) // 8 <= otaproto.MAX_KEY_LEN:
        raise OtaError(f"{path} is not an RSA update key (2048-4096 bits, e = 65537)")
    return key


def next_serial(private_path: Path) -> int:
    """A serial greater than every one signed with this key before: the clock in seconds, or one
    more than the last (kept beside the private key, in <key>.serial)."""
    counter = private_path.with_name(private_path.name + ".serial")
    try:
        last = int(counter.read_text().strip())
    except (FileNotFoundError, ValueError):
        last = 0
    serial = max(int(time.time()), last + 1)
    if serial > otaproto.MAX_SERIAL:
        raise OtaError(f"serial {serial} is beyond {otaproto.MAX_SERIAL}: reset {counter}")
    write_atomically(counter, f"{serial}\n")
    return serial


def sign(package: Package, key: PrivateKey, serial: int) -> Package:
    """The package signed: serial, key id and the signature over its statement."""
    if not 1 <= serial <= otaproto.MAX_SERIAL:
        raise OtaError(f"serial must be 1-{otaproto.MAX_SERIAL}, not {serial}")
    unsigned = Package(package.version, package.files, serial=serial, kid=key_id(key.public_key()))
    signature = key.sign(unsigned.statement(), padding.PKCS1v15(), hashes.SHA256())
    return Package(package.version, package.files, serial=serial, kid=unsigned.kid, signature=signature)


def verify(package: Package, key: PublicKey) -> None:
    """Raises OtaError, saying which, unless the package is signed by `key`."""
    have = key_id(key)
    if not package.signature:
        raise OtaError("the package is not signed: sign it with the ward's key (`wardcall update` does)")
    if package.kid != have:
        raise OtaError(f"the package is signed with another key ({package.kid or 'unknown'}); "
                       f"this ward's update key is {have}")
    try:
        key.verify(package.signature, package.statement(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise OtaError(f"the package's signature does not verify with this ward's update key ({have}): "
                       "it was changed after signing, or not signed with the ward key") from None
