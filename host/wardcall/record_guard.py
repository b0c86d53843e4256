"""What keeps the record whole across processes and restarts: one host per record (a lock beside
the database), and the record's identity remembered beside the ward TOML, so that a record that
went missing while the host was down is an alarm at the next start, not a new record in silence.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import time
from pathlib import Path

from .files import write_atomically
from .storage import StorageError

log = logging.getLogger("wardcall.record")


class RecordLock:
    """An exclusive flock on `<database>.lock`, holding the pid of the host that has it. Taken
    before anything of the record is written; held until the process ends."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.path = database.with_name(database.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """StorageError (one line) if another host holds the record, or the lock cannot be made."""
        try:
            self.database.parent.mkdir(parents=True, exist_ok=True)
            # no O_TRUNC: a second host must not touch the first one's pid
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            folder = self.database.parent
            where = f"its folder {folder} is read-only" if folder.is_dir() and not os.access(folder, os.W_OK) else "cannot make its lock file"
            raise StorageError(f"{self.database}: the record cannot be written: {where} ({self.path}: {exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise StorageError(f"{self.database}: the record is in use by another wardcall serve (pid {holder}): "
                                   "one host per record") from None
            raise StorageError(f"{self.database}: cannot lock the record ({self.path}): {exc.strerror}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)      # the flock goes with it; the file stays (it is not the lock)
            self._fd = None


def marker_path(config_path: Path) -> Path:
    """`<config stem>.record.json` beside the ward TOML: not in the record's folder, so that losing
    that folder does not lose the memory of what was in it."""
    return config_path.with_name(config_path.stem + ".record.json")


def check_identity(config_path: Path, database: Path, record_id: str, new_record: bool) -> str | None:
    """Compare the record opened with the one this ward used last; remember the one opened. The
    text of an alarm if they differ (a record missing, emptied or replaced), else None."""
    marker = marker_path(config_path)
    known: dict | None = None
    try:
        known = json.loads(marker.read_text("utf-8"))
        if not isinstance(known, dict) or not isinstance(known.get("record_id"), str):
            log.warning("%s: not a record marker; it is written anew", marker)
            known = None
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        log.warning("%s: cannot read it (%s); it is written anew", marker, exc)
    problem = None
    if known is not None and known["record_id"] != record_id:
        last = known.get("opened")
        since = f", last opened {time.strftime('%Y-%m-%d %H:%M', time.localtime(last))}" if isinstance(last, (int, float)) else ""
        if new_record:
            problem = (f"the record {database} is missing: a new one was started (the ward's record was "
                       f"{known['record_id']}{since}; look for it, or its backup)")
        else:
            problem = (f"the record {database} is not the one this ward used last (found {record_id}, expected "
                       f"{known['record_id']}{since})")
    try:
        write_atomically(marker, json.dumps({"record_id": record_id, "database": str(database),
                                             "opened": time.time()}) + "\n")
    except OSError as exc:
        log.warning("%s: cannot write the record marker (%s): a lost record will not be noticed at start", marker, exc)
    return problem
