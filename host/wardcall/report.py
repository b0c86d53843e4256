"""`wardcall report`: response times (to acknowledge, to attend, to clear) per call type, room
and shift, from the calls in the record, measured from when the call was placed; and routing:
time to accept per nurse (from when the call reached her) and per step that took it (from when
it was placed), how many calls had to be passed on, and how many came from a bed nobody had."""
from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
import statistics
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

from .config import WardConfig
from .protocol import KIND_NAMES

METRICS = (("acknowledge", "acknowledged_at"), ("attend", "attended_at"), ("clear", "cleared_at"))
ROUTE_METRICS = ("accept",)                 # nurse and step rows
SECTIONS = ("kind", "room", "shift", "nurse", "step", "routing")
# the routing counts (group_by "routing"): calls routed, passed on at least once, from an unassigned bed
ROUTED, PASSED_ON, UNASSIGNED = "routed", "passed on at least once", "placed on an unassigned bed"


@dataclass
class Stats:
    n: int
    mean: float | None
    median: float | None
    max: float | None

    @classmethod
    def of(cls, values: list[float]) -> "Stats":
        if not values:
            return cls(0, None, None, None)
        return cls(len(values), statistics.fmean(values), statistics.median(values), max(values))


@dataclass
class ReportRow:
    group_by: str        # "kind", "room", "shift", "nurse", "step" or "routing"
    group: str
    calls: int
    times: dict[str, Stats]   # by metric name


def parse_since(text: str, now: float | None = None) -> float:
    """A start time: relative ("90m", "12h", "7d") or a local date/time ("2025-11-01", "2025-11-01T06:00")."""
    now = time.time() if now is None else now
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if match:
        return now - float(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise ValueError(f"--since {text!r}: give a date like 2025-11-01, a time like 2025-11-01T06:00, or an age like 12h or 7d") from None


def shift_of(config: WardConfig, wall: float) -> str:
    local = time.localtime(wall)
    return config.shift_of(local.tm_hour * 60 + local.tm_min)


def summarise(config: WardConfig, calls: Iterable[sqlite3.Row]) -> list[ReportRow]:
    groups: dict[tuple[str, str], list[sqlite3.Row]] = {}
    calls_list = list(calls)
    for call in calls_list:
        kind = KIND_NAMES.get(call["kind"], str(call["kind"]))
        for group_by, group in (("kind", kind), ("room", call["room"]), ("shift", shift_of(config, call["placed_at"]))):
            groups.setdefault((group_by, group), []).append(call)
    kind_rank = {name: number for number, name in KIND_NAMES.items()}
    shift_rank = {name: i for i, (name, _) in enumerate(config.shifts)}
    by_order = {"kind": 0, "room": 1, "shift": 2}

    def order(key: tuple[str, str]) -> tuple:
        group_by, group = key
        rank = kind_rank.get(group, 99) if group_by == "kind" else shift_rank.get(group, 99) if group_by == "shift" else 0
        return (by_order[group_by], rank, group)

    rows = []
    for key in sorted(groups, key=order):
        members = groups[key]
        times = {}
        for metric, column in METRICS:
            times[metric] = Stats.of([c[column] - c["placed_at"] for c in members if c[column] is not None])
        rows.append(ReportRow(key[0], key[1], len(members), times))
    return rows + _routing_rows(calls_list)


def _route(call: sqlite3.Row) -> dict | None:
    try:
        text = call["route"]
    except (IndexError, KeyError):
        return None         # a record from before routing
    try:
        route = json.loads(text) if text else None
    except ValueError:
        return None
    return route if isinstance(route, dict) else None


def _routing_rows(calls: list[sqlite3.Row]) -> list[ReportRow]:
    """Who accepted, at which step, how fast; how many calls were passed on or unassigned."""
    by_nurse: dict[str, list[float]] = {}
    by_step: dict[str, list[float]] = {}
    steps_seen: list[str] = []
    counts = {ROUTED: 0, PASSED_ON: 0, UNASSIGNED: 0}
    for call in calls:
        route = _route(call)
        if route is None:
            continue
        counts[ROUTED] += 1
        counts[PASSED_ON] += route.get("passed_on", 0) > 0
        counts[UNASSIGNED] += bool(route.get("unassigned"))
        who, when, step = route.get("accepted_by"), route.get("accepted_at"), route.get("accepted_step")
        if who is None or when is None or step is None:
            continue
        reached = route.get("routed_at", {}).get(who, call["placed_at"])
        by_nurse.setdefault(who, []).append(when - reached)
        name = route["steps"][step]
        by_step.setdefault(name, []).append(when - call["placed_at"])
        steps_seen += [s for s in route["steps"] if s not in steps_seen]
    if not counts[ROUTED]:
        return []
    rows = [ReportRow("nurse", who, len(v), {"accept": Stats.of(v)}) for who, v in sorted(by_nurse.items())]
    rows += [ReportRow("step", step, len(by_step[step]), {"accept": Stats.of(by_step[step])}) for step in steps_seen
             if step in by_step]
    rows += [ReportRow("routing", name, n, {}) for name, n in counts.items()]
    return rows


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def as_table(rows: list[ReportRow]) -> str:
    out = []
    for group_by in SECTIONS:
        section = [r for r in rows if r.group_by == group_by]
        if not section:
            continue
        metrics = list(section[0].times)
        header = ["", "calls"]
        for metric in metrics:
            header += [f"{metric} n", "mean s", "median s", "max s"]
        lines = [[f"by {group_by}" if group_by != "routing" else "routing"] + header[1:]]
        for r in section:
            line = [r.group, str(r.calls)]
            for metric in metrics:
                s = r.times[metric]
                line += [str(s.n), _fmt(s.mean), _fmt(s.median), _fmt(s.max)]
            lines.append(line)
        widths = [max(len(l[i]) for l in lines) for i in range(len(header))]
        for i, line in enumerate(lines):
            out.append("  ".join(cell.ljust(widths[j]) if j == 0 else cell.rjust(widths[j]) for j, cell in enumerate(line)))
            if i == 0:
                out.append("  ".join("-" * w for w in widths))
        out.append("")
    if not out:
        return "no calls in this period\n"
    return "\n".join(out)


CSV_METRICS = [m for m, _ in METRICS] + list(ROUTE_METRICS)
CSV_COLUMNS = ["group_by", "group", "calls"] + [f"{m}_{s}" for m in CSV_METRICS for s in ("n", "mean_s", "median_s", "max_s")]


def as_csv(rows: list[ReportRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        line: list[object] = [r.group_by, r.group, r.calls]
        for metric in CSV_METRICS:
            s = r.times.get(metric)
            if s is None:
                line += ["", "", "", ""]        # not measured in this group
            else:
                line += [s.n] + ["" if v is None else f"{v:.3f}" for v in (s.mean, s.median, s.max)]
        writer.writerow(line)
    return buffer.getvalue()
