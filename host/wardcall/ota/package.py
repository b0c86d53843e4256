"""The files of an update: built from a firmware folder, or checked when uploaded to the API.

lib/**/*.py (or, with compile=True, their .mpy from mpy-cross; never both), except the modules
an update may never replace (boot chain and board pin map, PROTECTED).
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import OtaError

PROTECTED = ("boot", "main", "maint", "otaboot", "board")     # as firmware/lib/otaboot.py


@dataclass
class Package:
    version: str
    files: list[tuple[str, bytes]]          # (path on the flash, content), sorted by path

    @property
    def size(self) -> int:
        return sum(len(data) for _, data in self.files)

    def manifest(self) -> list[list[Any]]:
        return [[path, len(data), hashlib.sha256(data).hexdigest()] for path, data in self.files]

    @property
    def id(self) -> str:
        """Names the package: a terminal resumes an interrupted transfer only of the same id."""
        return hashlib.sha256(json.dumps([self.version, self.manifest()]).encode()).hexdigest()[:32]

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version,
                "files": [[path, base64.b64encode(data).decode()] for path, data in self.files]}

    @classmethod
    def from_json(cls, obj: Any) -> "Package":
        try:
            version = obj["version"]
            files = [(str(p), base64.b64decode(d, validate=True)) for p, d in obj["files"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise OtaError(f"bad package: {exc}") from None
        if not isinstance(version, str) or not 0 < len(version.encode()) <= 32:
            raise OtaError("bad package: the version must be text of 1-32 bytes")
        if not files:
            raise OtaError("bad package: no files")
        for path, _ in files:
            if not valid_path(path):
                raise OtaError(f"bad package: {path} may not be updated over the air")
        return cls(version, sorted(files))


def valid_path(path: str) -> bool:
    """As firmware/lib/ota.py valid_path: lib/<name>.py|.mpy, plain names, never PROTECTED."""
    if not re.fullmatch(r"lib/[A-Za-z0-9_\-./]+\.m?py", path) or len(path) > 64:
        return False
    if ".." in path or "//" in path:
        return False
    stem = path.rsplit("/", 1)[1].rsplit(".", 1)[0]
    return bool(stem) and stem not in PROTECTED


def firmware_version(firmware_dir: Path) -> str:
    text = (firmware_dir / "lib" / "version.py").read_text()
    m = re.search(r"""^VERSION\s*=\s*["']([^"']+)["']""", text, re.M)
    if not m:
        raise OtaError(f"no VERSION = \"...\" in {firmware_dir / 'lib' / 'version.py'}")
    return m.group(1)


def build_package(firmware_dir: Path | str | None = None, compile: bool = False) -> Package:
    """The update built from a firmware folder (default: the repository's firmware/)."""
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
        from ..deploy.build import _compile
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
                    _compile(src, "lib/" + rel, out)
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
    return Package(version, files)
