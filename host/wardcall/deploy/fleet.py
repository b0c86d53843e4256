"""`wardcall fleet deploy`: many boards in parallel from a plan file, with progress and a summary.

A plan is TOML:

    [[board]]
    port = "/dev/ttyUSB0"
    device = "bed-101-1"
    board = "esp32"          # optional: otherwise detected from the board

or CSV with a header row `port,device[,board]` (lines starting with # are ignored).
With --discover (and no plan, or in addition to it), the USB serial ports that look like boards are
paired in sorted order with the device ids given by --devices.
"""
from __future__ import annotations

import csv
import io
import sys
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import IO, TYPE_CHECKING, Callable

from .errors import DeployError

if TYPE_CHECKING:
    from .deploy import Result

Entry = dict[str, str]      # one board of a plan: port, device, board (optional), _where


def load_plan(plan: str | Path) -> list[Entry]:
    """[{port, device, board?}] from a TOML or CSV plan; a DeployError names the bad line."""
    path = Path(plan)
    try:
        text = path.read_text("utf-8")
    except OSError as e:
        raise DeployError("cannot read the plan %s: %s" % (path, e.strerror or e), code="plan",
                          fix="pass --plan with a TOML or CSV file (see docs/DEPLOY.md)")
    entries: list[Entry] = []
    if path.suffix.lower() == ".csv" or (path.suffix.lower() != ".toml" and "," in text.split("\n")[0]):
        rows = [l for l in text.splitlines() if l.strip() and not l.lstrip().startswith("#")]
        reader = csv.DictReader(io.StringIO("\n".join(rows)))
        if not reader.fieldnames or not {"port", "device"} <= {f.strip() for f in reader.fieldnames}:
            raise DeployError("%s: the first line must be the header port,device[,board]" % path,
                              code="plan", fix="start the CSV with: port,device,board")
        for n, line in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in line.items() if k}
            entries.append(dict(row, _where="%s row %d" % (path.name, n)))
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise DeployError("%s is not valid TOML: %s" % (path, e), code="plan")
        items = data.get("board") or data.get("boards") or []
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise DeployError("%s: use [[board]] tables with port and device" % path, code="plan")
        for n, item in enumerate(items, start=1):
            entries.append(dict({k: str(v) for k, v in item.items()}, _where="%s [[board]] #%d" % (path.name, n)))
    seen_ports: dict[str, str] = {}
    seen_devices: dict[str, str] = {}
    for entry in entries:
        for key in ("port", "device"):
            if not entry.get(key):
                raise DeployError("%s: %s has no %s" % (path, entry["_where"], key), code="plan")
        if entry["port"] in seen_ports:
            raise DeployError("%s: port %s is listed twice (%s and %s)"
                              % (path, entry["port"], seen_ports[entry["port"]], entry["_where"]), code="plan")
        if entry["device"] in seen_devices:
            raise DeployError("%s: device %s is listed twice (%s and %s)"
                              % (path, entry["device"], seen_devices[entry["device"]], entry["_where"]), code="plan")
        seen_ports[entry["port"]] = entry["_where"]
        seen_devices[entry["device"]] = entry["_where"]
    if not entries:
        raise DeployError("%s lists no boards" % path, code="plan",
                          fix="add [[board]] tables (TOML) or port,device rows (CSV)")
    return entries


def discover_ports() -> list[str]:
    """USB serial ports that look like boards (have a USB vendor id)."""
    from serial.tools import list_ports
    return sorted(p.device for p in list_ports.comports() if p.vid is not None)


class Progress:
    """A one-line text progress bar on a terminal; plain lines otherwise (CI logs)."""

    def __init__(self, total: int, stream: IO[str] | None = None, width: int = 30) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.lock = threading.Lock()
        self.started = time.monotonic()

    def line(self) -> str:
        filled = int(self.width * self.done / self.total) if self.total else self.width
        return "[%s%s] %d/%d done, %d failed, %.0f s" % (
            "#" * filled, "." * (self.width - filled), self.done, self.total, self.failed,
            time.monotonic() - self.started)

    def advance(self, result: Result) -> None:
        with self.lock:
            self.done += 1
            if not result.ok:
                self.failed += 1
            text = self.line() + "  %s %s: %s" % (result.device, "ok" if result.ok else "FAILED", result.reason)
            if self.tty:
                self.stream.write("\r\x1b[K" + text)
                if self.done == self.total:
                    self.stream.write("\n")
            else:
                self.stream.write(text + "\n")
            self.stream.flush()

    def start(self) -> None:
        with self.lock:
            self.stream.write(self.line() + ("" if self.tty else "\n"))
            self.stream.flush()


def summary_table(results: list[Result]) -> str:
    """Plain-text table: device, port, result, detail."""
    rows = [("DEVICE", "PORT", "RESULT", "DETAIL")]
    for r in results:
        rows.append((r.device, r.port, "ok" if r.ok else "FAILED",
                     r.reason + (" (%.1f s)" % r.seconds if r.ok else "")))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    out = []
    for row in rows:
        out.append("  ".join(row[i].ljust(widths[i]) for i in range(3)) + "  " + row[3])
    ok = sum(1 for r in results if r.ok)
    out.append("%d of %d boards deployed, %d failed" % (ok, len(results), len(results) - ok))
    fixes = ["  %s (%s): %s" % (r.device, r.port, r.error.fix)
             for r in results if not r.ok and r.error is not None and r.error.fix]
    if fixes:
        out.append("")
        out.append("what to do:")
        out.extend(fixes)
    return "\n".join(out)


def fleet_deploy(entries: list[Entry], deploy_one: Callable[[Entry], Result], workers: int = 4,
                 progress: Progress | None = None) -> list[Result]:
    """Run deploy_one(entry) -> Result for every entry, `workers` at a time.

    deploy_one raises DeployError (or anything else) on failure; that becomes a failed Result.
    Results come back in plan order.
    """
    from .deploy import Result

    results: dict[int, Result] = {}
    if progress:
        progress.start()

    def one(i: int, e: Entry) -> tuple[int, Result]:
        started = time.monotonic()
        try:
            r = deploy_one(e)
        except DeployError as err:
            r = Result(port=e["port"], device=e["device"], error=err)
        except Exception as err:  # a bug or an unexpected failure: still report it per board
            r = Result(port=e["port"], device=e["device"],
                       error=DeployError("%s: %s" % (type(err).__name__, err), code="internal",
                                         port=e["port"]))
        r.seconds = r.seconds or (time.monotonic() - started)
        return i, r

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="deploy") as pool:
        futures = [pool.submit(one, i, e) for i, e in enumerate(entries)]
        for f in as_completed(futures):
            i, r = f.result()
            results[i] = r
            if progress:
                progress.advance(r)
    return [results[i] for i in range(len(entries))]
