"""Text views of the record for `wardcall log` and `wardcall status` (read-only, while the
server writes)."""
from __future__ import annotations

import json
import sqlite3
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from .config import WardConfig
from .record_queries import latest_server_start, open_calls, terminal_rows
from .protocol import KIND_NAMES


def clock_text(wall: float | None) -> str:
    if wall is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall)) + f".{int(wall % 1 * 1000):03d}"


def format_event(row: sqlite3.Row) -> str:
    data: dict[str, Any] = json.loads(row["data"])
    parts = [clock_text(row["wall"]), f"{row['kind']:<22}"]
    if row["device"]:
        parts.append(row["device"])
    if row["call"] is not None:
        parts.append(f"call #{row['call']}")
    if row["user"]:
        parts.append(f"by {row['user']}")
    details = " ".join(f"{k}={v}" for k, v in data.items() if v not in (None, ""))
    if details:
        parts.append(details)
    return "  ".join(parts)


@dataclass(frozen=True)
class ServerCheck:
    """Whether this ward's server answers: `running` only when its /api/health names this
    ward and the run of the latest server start in the record; `text` says what was found."""
    running: bool
    text: str


def check_server(config: WardConfig, conn: sqlite3.Connection, timeout: float = 2.0) -> ServerCheck:
    from .trust import client_context, trust_ward
    host = config.network.api_host if config.network.api_host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    scheme = "https" if config.tls.console == "https" else "http"
    url = f"{scheme}://{host}:{config.network.api_port}/api/health"
    trust_ward(config)
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=client_context() if scheme == "https" else None) as reply:
            health = json.loads(reply.read(65536))
    except urllib.error.HTTPError as exc:
        return ServerCheck(False, f"NOT RUNNING (another program answers on {url}: HTTP {exc.code}; last known state)")
    except ssl.SSLError as exc:  # something answers, but not with the ward's certificate
        return ServerCheck(False, f"NOT RUNNING (another program answers on {url}: {exc.reason or exc}; last known state)")
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLError):
            return ServerCheck(False, f"NOT RUNNING (another program answers on {url}: {exc.reason.reason or exc.reason}; "
                                      "last known state)")
        return ServerCheck(False, f"NOT RUNNING (nothing answers on {url}; last known state)")
    except OSError:              # refused or timed out
        return ServerCheck(False, f"NOT RUNNING (nothing answers on {url}; last known state)")
    except ValueError:
        return ServerCheck(False, f"NOT RUNNING (another program answers on {url}; last known state)")
    started = latest_server_start(conn)
    if not isinstance(health, dict) or health.get("ward") != config.ward:
        ward = health.get("ward") if isinstance(health, dict) else None
        return ServerCheck(False, f"NOT RUNNING (the program on {url} is not ward {config.ward}'s server"
                                  + (f" but ward {ward}'s" if isinstance(ward, str) else "") + "; last known state)")
    if started is None or health.get("run") != started["run"]:
        return ServerCheck(False, f"NOT RUNNING (a server of ward {config.ward} answers on {url}, but it does not "
                                  f"write this record {config.database}; last known state)")
    return ServerCheck(True, f"running (pid {health.get('pid')})")


def status_text(config: WardConfig, conn: sqlite3.Connection, server: ServerCheck) -> str:
    now = time.time()
    out = [f"ward {config.ward}    {clock_text(now)}    server {server.text}", ""]
    calls = open_calls(conn)
    out.append(f"open calls: {len(calls)}")
    for c in calls:
        age = now - c["placed_at"]
        extra = []
        if c["acknowledged_by"]:
            extra.append(f"ack by {c['acknowledged_by']}")
        if c["escalation"]:
            extra.append(f"escalation {c['escalation']}")
        if c["realerts"]:
            extra.append(f"re-alerted {c['realerts']}x")
        out.append(f"  #{c['id']:<5} {KIND_NAMES.get(c['kind'], '?'):<13} room {c['room']:<6} bed {c['bed'] or '-':<4} "
                   f"{c['state']:<13} {int(age // 60):3d} min {int(age % 60):02d} s  {'  '.join(extra)}")
    terminals = {row["device"]: row for row in terminal_rows(conn)}
    out += ["", "terminals:"]
    for device, t in sorted(config.terminals.items(), key=lambda kv: (kv[1].room, kv[1].bed, kv[0])):
        row = terminals.get(device)
        status = row["status"] if row else "unknown"
        presence = "  staff present" if row and row["presence"] else ""
        out.append(f"  {device:<16} room {t.room:<6} bed {t.bed or '-':<4} {status:<8} last seen {clock_text(row['last_seen'] if row else None)}{presence}")
    return "\n".join(out) + "\n"
