"""`wardcall standby --config standby.toml`: a standby ward host on a second PC.

Its configuration is the ward's (the same terminals, keys and users) with its own record and its
own leaf node, and in [federation] `standby_of`, the primary's leaf node. Until it takes over
it serves nothing: it follows the primary's bucket (every open call with its stored row, and the
`host` beat the primary writes every host_beat_s) on two paths: straight from the primary's leaf
node, and through its own leaf node and the hospital hub (the primary's JetStream domain), so that
a cut link between the two PCs alone is no reason to take over. Once the beat has been silent on
both for takeover_after_s — and, if primary_terminal is set, the primary's terminal port refuses
too — it takes over: the open calls it followed go on its board (recorded in its record as restored
calls, their ids, times, acknowledgements and routes as they were), and it starts serving like
`wardcall serve`. The terminals, which know both hosts, connect to it; after WELCOME each
announces again every call still lit at its bed, and a call it holds already is not placed
twice (ward/calls.py: one call however often it arrives): that is the last safety net for a
call placed after the standby's last look. See docs/FEDERATION.md for what the firmware needs.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors

from ..config import ConfigError, WardConfig, load_config
from ..ratelog import RateLimitedLog, setup_logging
from ..server import serve
from .leaflink import LeafTls, connect_options, ward_leaf_tls
from .settings import FederationSettings
from .peer import terminal_port_answers
from .subjects import ward_bucket, ward_domain

log = logging.getLogger("wardcall.standby")

RETRY_S = 0.5
WATCH_POLL_S = 0.25
STATUS_BEAT_S = 1.0     # a beat alone rewrites the status file at most this often (beats come ~10 a second)
NATS_ERRORS = (nats.errors.Error, nats.js.errors.Error, asyncio.TimeoutError, OSError)


class PrimaryFollower:
    """The primary's open calls and its beat, from the primary's bucket (KV watches on both paths)."""

    PATHS = ("direct", "hub")

    def __init__(self, settings: FederationSettings, status_file: Path | None = None,
                 leaf_tls: LeafTls | None = None) -> None:
        assert settings.standby_of is not None
        self.settings = settings
        self.leaf_tls = leaf_tls                       # for tls:// leaf nodes (federation/leaflink.py)
        self.rows: dict[str, dict[str, Any]] = {}      # bucket key -> the call's stored row
        self.revisions: dict[str, int] = {}            # bucket key -> the newest revision taken
        self.beat_at: float | None = None              # monotonic: when the primary's beat last changed
        self.beat: dict[str, Any] | None = None
        self.beats = {path: 0 for path in self.PATHS}  # beats seen on each path (the status shows them)
        self.status_file = status_file
        self.started = time.monotonic()
        self._ratelog = RateLimitedLog(log)
        self._status_at: float | None = None           # monotonic: when the status file was last written

    def open_calls(self) -> list[dict[str, Any]]:
        return sorted(self.rows.values(), key=lambda r: r["id"])

    def take(self, key: str, value: bytes | None, deleted: bool, revision: int = 0, path: str = "direct") -> None:
        """One bucket entry from either path: each path brings every revision, in order, but one
        path may lag the other, so an entry older than one already taken changes nothing."""
        if key == "host" and not deleted and value:
            self.beats[path] += 1
        if revision and revision <= self.revisions.get(key, 0):
            if key == "host":
                self._status("following", beat=True)
            return
        if revision:
            self.revisions[key] = revision
        if key == "host":
            if not deleted and value:
                self.beat = json.loads(value)
                self.beat_at = time.monotonic()
                self._status("following", beat=True)
            return
        if not key.startswith("call."):
            return
        if deleted or not value:
            self.rows.pop(key, None)
        else:
            try:
                self.rows[key] = json.loads(value)["row"]
            except (ValueError, KeyError, TypeError) as exc:
                self._ratelog.warning(("bad key",), "standby: the primary's %s is not a call: %s", key[:64], exc)
                return
        self._status("following")

    def _status(self, state: str, beat: bool = False) -> None:
        """The status file (the ready file): at once for a call, for a beat alone at most every
        STATUS_BEAT_S; replaced whole, so a reader never sees half of it."""
        if self.status_file is None:
            return
        now = time.monotonic()
        if beat and self._status_at is not None and now - self._status_at < STATUS_BEAT_S:
            return
        self._status_at = now
        calls = [[r["device"], r["call_id"], r["state"]] for r in self.open_calls()]
        partial = self.status_file.with_name(self.status_file.name + ".new")
        partial.write_text(json.dumps({"pid": os.getpid(), "state": state, "open_calls": calls,
                                       "primary_seen": self.beat_at is not None, "beats": self.beats}))
        os.replace(partial, self.status_file)

    def primary_silent_for(self) -> float:
        """How long the primary's beat has not changed (since the standby's start if never seen)."""
        return time.monotonic() - (self.beat_at if self.beat_at is not None else self.started)

    async def follow(self, path: str) -> None:
        """Watch the primary's bucket on one path for ever (reconnecting): "direct" on the
        primary's leaf node, "hub" through this host's own leaf node and the hub, in the
        primary's JetStream domain. The caller decides when to stop."""
        settings = self.settings
        server = settings.standby_of if path == "direct" else settings.leaf_url
        domain = None if path == "direct" else ward_domain(settings.ward_id)
        where = f"{server}" if domain is None else f"{server} (domain {domain}, through the hub)"
        assert server is not None
        async def error(exc: Exception) -> None:         # the client's own reports, one line a while
            self._ratelog.warning(("nats", path), "standby: the primary's bucket on %s: %s", where, exc or type(exc).__name__)

        nc = None
        while nc is None:
            try:
                nc = await nats.connect(servers=[server], name=f"wardcall standby {settings.ward_id} ({path})",
                                        connect_timeout=2, reconnect_time_wait=RETRY_S, max_reconnect_attempts=-1,
                                        error_cb=error, **connect_options(server, self.leaf_tls))
            except NATS_ERRORS as exc:
                self._ratelog.warning(("connect", path), "standby: cannot reach the primary's bucket on %s: %s",
                                      where, exc or type(exc).__name__)
                await asyncio.sleep(RETRY_S)
        try:
            while True:
                try:
                    kv = await nc.jetstream(domain=domain).key_value(ward_bucket(settings.ward_id))
                    watcher = await kv.watchall()
                    log.info("standby: following the primary's bucket %s on %s", ward_bucket(settings.ward_id), where)
                    self._status("following")
                    while True:
                        try:
                            entry = await watcher.updates(timeout=WATCH_POLL_S)
                        except nats.errors.TimeoutError:
                            continue
                        if entry is None:        # the end of the values there were at the start
                            continue
                        self.take(entry.key, entry.value, entry.operation in ("DEL", "PURGE"), entry.revision or 0, path)
                except NATS_ERRORS as exc:
                    self._ratelog.warning(("watch", path), "standby: the primary's bucket on %s: %s",
                                          where, exc or type(exc).__name__)
                    await asyncio.sleep(RETRY_S)
        finally:
            await nc.close()


async def _primary_refuses(address: str | None) -> bool:
    """True if the primary's terminal port does not take a connection (or none is configured)."""
    return address is None or not await terminal_port_answers(address)


async def wait_for_takeover(follower: PrimaryFollower) -> float:
    """Follow until the primary is silent (and refuses): the seconds its beat had been silent."""
    settings = follower.settings
    tasks = [asyncio.create_task(follower.follow(path), name=f"standby-follow-{path}") for path in follower.PATHS]
    try:
        while True:
            await asyncio.sleep(min(0.1, settings.takeover_after_s / 10))
            for task in tasks:
                if task.done():
                    task.result()
            silent = follower.primary_silent_for()
            if silent >= settings.takeover_after_s and await _primary_refuses(settings.primary_terminal):
                return silent
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def standby(config: WardConfig, ready_file: Path | None) -> None:
    settings = config.federation
    assert settings is not None and settings.standby_of is not None
    follower = PrimaryFollower(settings, ready_file, ward_leaf_tls(config.tls))
    silent = await wait_for_takeover(follower)
    calls = follower.open_calls()
    log.warning("standby: the primary of ward %s has been silent for %.1f s: taking over with %d open call(s)",
                settings.ward_id, silent, len(calls))
    await serve(config, ready_file, takeover=calls)


def cmd_standby(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    config = load_config(Path(args.config))
    if config.federation is None or config.federation.standby_of is None:
        raise ConfigError(config.path, "[federation] standby_of", "is missing: a standby follows the primary's leaf node")
    asyncio.run(standby(config, Path(args.ready_file) if args.ready_file else None))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("standby", help="a standby ward host: follows the primary, takes over when it dies")
    p.add_argument("--config", required=True, help="the standby's ward TOML ([federation] standby_of)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--ready-file", help="its state as JSON: following, then the ports once serving")
    p.set_defaults(func=cmd_standby)
