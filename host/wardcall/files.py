"""Files written whole or not at all: a power cut or a full disk while the host writes a key,
a certificate or a configuration must leave the previous file, never half of the new one.

Each file is written to a temporary file beside it, flushed to the disk, and renamed over the
old one (a rename within a folder is atomic); the folder is flushed too, so the rename
survives a power cut.
"""
from __future__ import annotations

import os
from pathlib import Path


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _write_temporary(path: Path, data: bytes, mode: int) -> Path:
    tmp = _temporary(path)
    # the mode from the first byte: a private key is never readable by others, not even briefly
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)         # O_CREAT's mode is cut by the umask
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _sync_folders(paths: list[Path]) -> None:
    for folder in {p.parent for p in paths}:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomically(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    """Replace `path` with `data` (str as UTF-8), mode `mode`, whole or not at all."""
    replace_together([(path, data, mode)])


def replace_together(files: list[tuple[Path, bytes | str, int]]) -> None:
    """Several files that belong together (a key and its certificates): every one is written in
    full first, and only then are they renamed into place. A failure while writing (a full
    disk) leaves all the old ones; only a stop between the renames can mix old and new, which
    a reader that checks that they match (tls.keep_host_certificate) can tell."""
    written: list[tuple[Path, Path]] = []
    try:
        for path, data, mode in files:
            raw = data.encode("utf-8") if isinstance(data, str) else data
            written.append((_write_temporary(path, raw, mode), path))
    except BaseException:
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, path in written:
        os.replace(tmp, path)
    _sync_folders([path for _, path in written])
