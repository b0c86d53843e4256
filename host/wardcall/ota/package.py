"""The files of an update: built from a firmware folder, signed (ota/signing.py), and checked when
uploaded to the API.

lib/**/*.py (or, with compile=True, their .mpy from mpy-cross; never both), except the modules
an update may never replace (otaproto.PROTECTED: the boot chain and the board pin map). The wire
rules (paths, versions, limits, the signed statement) are otaproto's, the module the terminals run.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..protocol import otaproto
from .errors import OtaError

PROTECTED = otaproto.PROTECTED
valid_path = otaproto.valid_path


@dataclass
class Package:
    version: str
    files: list[tuple[str, bytes]]          # (path on the flash, content), sorted by path
    serial: int = 0                         # signed: greater than every earlier update's
    kid: str = ""                           # the signing key's id (otaproto.key_id)
    signature: bytes = b""                  # RSASSA-PKCS1-v1_5 / SHA-256 over statement()

    @property
    def size(self) -> int:
        return sum(len(data) for _, data in self.files)

    def manifest(self) -> list[list[Any]]:
        return [[path, len(data), hashlib.sha256(data).hexdigest()] for path, data in self.files]

    def digest(self) -> str:
        return otaproto.manifest_digest(self.manifest())

    def statement(self) -> bytes:
        """The bytes the ward key signs (version, serial, the manifest's digest)."""
        return otaproto.statement(self.version, self.serial, len(self.files), self.size, self.digest())

    @property
    def id(self) -> str:
        """Names the package: a terminal resumes an interrupted transfer only of the same id."""
        return otaproto.package_id(self.statement())

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "serial": self.serial, "kid": self.kid,
                "signature": base64.b64encode(self.signature).decode(), "manifest": self.manifest(),
                "files": [[path, base64.b64encode(data).decode()] for path, data in self.files]}

    @classmethod
    def from_json(cls, obj: Any) -> "Package":
        """An uploaded package, checked: limits, paths, signed and unchanged since it was signed
        (whether by the ward's key is OtaService.start's check, with the server's public key)."""
        try:
            version = obj["version"]
            files = [(str(p), base64.b64decode(d, validate=True)) for p, d in obj["files"]]
            signature = base64.b64decode(obj.get("signature") or "", validate=True)
            serial, kid, signed = obj.get("serial", 0), obj.get("kid", ""), obj.get("manifest")
        except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as exc:
            raise OtaError(f"bad package: {exc}") from None
        if not otaproto.valid_version(version):
            raise OtaError("bad package: the version must be 1-32 letters, digits, '.', '_', '+' or '-'")
        if not files:
            raise OtaError("bad package: no files")
        check_files(files)
        if not signature:
            raise OtaError("the package is not signed: sign it with the ward's key (`wardcall update` does, "
                           "with [ota] private_key)")
        if isinstance(serial, bool) or not isinstance(serial, int) or not 1 <= serial <= otaproto.MAX_SERIAL \
                or not isinstance(kid, str):
            raise OtaError("bad package: serial and key id")
        pkg = cls(version, sorted(files), serial=serial, kid=kid, signature=signature)
        if not isinstance(signed, list):
            raise OtaError("bad package: a signed package carries its manifest")
        actual = {e[0]: e for e in pkg.manifest()}
        try:
            claimed = {e[0]: [e[0], e[1], e[2]] for e in signed}
        except (TypeError, IndexError, KeyError):
            raise OtaError("bad package: the manifest must list [path, size, sha256]") from None
        for path in sorted(set(actual) | set(claimed)):
            if path not in claimed:
                raise OtaError(f"{path} was added after the package was signed (it is not in the signed manifest)")
            if path not in actual:
                raise OtaError(f"{path} was removed after the package was signed")
            if actual[path] != claimed[path]:
                raise OtaError(f"{path} was changed after the package was signed (its SHA-256 is not the signed one)")
        return pkg


def check_files(files: list[tuple[str, bytes]]) -> None:
    """The terminal's limits and path rules (otaproto), so a package is refused before any transfer."""
    if len(files) > otaproto.MAX_FILES:
        raise OtaError(f"bad package: {len(files)} files, at most {otaproto.MAX_FILES}")
    size = sum(len(d) for _, d in files)
    if size > otaproto.MAX_TOTAL:
        raise OtaError(f"bad package: {size} bytes, at most {otaproto.MAX_TOTAL}")
    seen: set[str] = set()
    for path, _ in files:
        if not valid_path(path):
            raise OtaError(f"bad package: {path} may not be updated over the air")
        if path in seen or otaproto.twin(path) in seen:
            raise OtaError(f"bad package: {path} twice (or beside its .py/.mpy twin)")
        seen.add(path)


def firmware_version(firmware_dir: Path) -> str:
    text = (firmware_dir / "lib" / "version.py").read_text()
    m = re.search(r"""^VERSION\s*=\s*["']([^"']+)["']""", text, re.M)
    if not m:
        raise OtaError(f"no VERSION = \"...\" in {firmware_dir / 'lib' / 'version.py'}")
    if not otaproto.valid_version(m.group(1)):
        raise OtaError(f"VERSION {m.group(1)!r} in {firmware_dir / 'lib' / 'version.py'}: "
                       "1-32 letters, digits, '.', '_', '+' or '-'")
    return m.group(1)


def build_package(firmware_dir: Path | str | None = None, compile: bool = False) -> Package:
    """The (unsigned) update built from a firmware folder (default: the repository's firmware/)."""
    if firmware_dir is None:
        from ..checkout import FIRMWARE
        firmware_dir = FIRMWARE
    fw = Path(firmware_dir)
    lib = fw / "lib"
    if not lib.is_dir():
        raise OtaError(f"{fw} has no lib/ folder: not a wardcall firmware")
    version = firmware_version(fw)
    files: list[tuple[str, bytes]] = []
    tmp = None
    if compile:
        import tempfile
        from ..deploy.build import compile_module
        from ..deploy.errors import DeployError
        tmp = tempfile.TemporaryDirectory(prefix="wardcall-ota-")
    try:
        for src in sorted(lib.rglob("*.py")):
            rel = src.relative_to(lib).as_posix()
            if "__pycache__" in rel or src.stem in PROTECTED:
                continue
            if compile:
                out = Path(tmp.name) / (rel[:-3] + ".mpy")
                try:
                    compile_module(src, "lib/" + rel, out)
                except DeployError as exc:
                    raise OtaError(str(exc)) from None
                files.append(("lib/" + rel[:-3] + ".mpy", out.read_bytes()))
            else:
                files.append(("lib/" + rel, src.read_bytes()))
    finally:
        if tmp is not None:
            tmp.cleanup()
    for path, _ in files:
        if not valid_path(path):
            raise OtaError(f"{path}: file names under lib/ must be plain ASCII (letters, digits, _ - .)")
    check_files(files)
    return Package(version, sorted(files))
