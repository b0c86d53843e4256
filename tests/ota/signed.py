"""Signed packages for the OTA tests, made the way `wardcall update` makes them: the test keys
(tests/vectors/ota_test_key_a.pem is "the ward's key", _b.pem "another ward's"), signing with
wardcall.ota.signing, and the exact CMD_OTA_* arguments the host sends (otaproto's encoders)."""
from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization

from wardcall.ota import Package, signing
from wardcall.protocol import otaproto, wardproto

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
CHECK_ROUNDS = 9                 # 17 slices of the check, 2 per command (firmware/lib/ota.py)


def load_key(name: str):
    return serialization.load_pem_private_key((VECTORS / f"ota_test_key_{name}.pem").read_bytes(), None)


WARD_KEY = load_key("a")
OTHER_KEY = load_key("b")


def key_text(key=WARD_KEY) -> str:
    """What deploy writes to the board's otakey.json."""
    return signing.board_key_text(key.public_key())


def write_key_files(private_path: Path, public_path: Path, key=WARD_KEY) -> None:
    """The ward's key pair as `wardcall update keygen` leaves it (the test key instead of a new one)."""
    from wardcall.devicekeys import write_private
    write_private(private_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()).decode())
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))


def sign(files, version: str = "9.9", serial: int = 100, key=WARD_KEY) -> Package:
    return signing.sign(Package(version, sorted(files)), key, serial)


def tampered(pkg: Package, path: str, data: bytes) -> Package:
    """The signed package with one file's bytes changed after signing (signature kept)."""
    files = [(p, data if p == path else d) for p, d in pkg.files]
    return Package(pkg.version, files, serial=pkg.serial, kid=pkg.kid, signature=pkg.signature)


def begin_arg(pkg: Package, trial_s: int = 30, manifest=None) -> bytes:
    manifest = manifest if manifest is not None else pkg.manifest()
    hdr = {"v": pkg.version, "serial": pkg.serial, "n": len(manifest), "size": sum(e[1] for e in manifest),
           "m": otaproto.manifest_digest(manifest), "kid": pkg.kid or "0" * 16, "trial_s": trial_s}
    return otaproto.encode_begin(hdr, pkg.signature)


def commands(pkg: Package, trial_s: int = 30, chunk: int = 960, manifest=None, signed_manifest=None,
             commit: bool = True):
    """[(cmd, arg)] as the host sends them: BEGIN, every FILE, the CHUNKs, COMMIT. manifest: the
    declarations to send (default: the package's own); signed_manifest: the one whose digest BEGIN
    carries (default: the declared one)."""
    manifest = manifest if manifest is not None else pkg.manifest()
    out = [(wardproto.CMD_OTA_BEGIN, begin_arg(pkg, trial_s, signed_manifest or manifest))]
    out += [(wardproto.CMD_OTA_FILE, otaproto.encode_file(i, *e)) for i, e in enumerate(manifest)]
    # the terminal checks the signature a slice per command: the host declares the last file again
    # until the answer says "sig": "ok"; CHECK_ROUNDS more is always enough
    out += [(wardproto.CMD_OTA_FILE, otaproto.encode_file(len(manifest) - 1, *manifest[-1]))] * CHECK_ROUNDS
    for i, (_, data) in enumerate(pkg.files):
        out += [(wardproto.CMD_OTA_CHUNK, otaproto.encode_chunk(i, off, data[off:off + chunk]))
                for off in range(0, len(data), chunk)]
    if commit:
        out.append((wardproto.CMD_OTA_COMMIT, b""))
    return out
