"""`wardcall serve`: one asyncio process with the terminal sessions (TCP), discovery (UDP),
the console API (HTTP) and the timers, over one record."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from pathlib import Path

from aiohttp import web

from .clock import SystemClock
from .config import WardConfig
from .discovery import start_discovery
from .hub import WardHub
from .devicekeys import load_keys
from .storage import AsyncWriter, open_storage
from .terminal_server import TerminalServer
from .web import make_app

log = logging.getLogger("wardcall.server")


def tick_interval(config: WardConfig) -> float:
    """How often timers are checked: a quarter heartbeat, so an offline terminal is flagged
    within 3¼ heartbeat intervals, and at least four times a second for escalations."""
    return max(0.02, min(0.25, config.heartbeat_s / 4))


async def run_timers(hub: WardHub, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await hub.tick()
        except Exception:   # a failed tick is logged and retried, never the end of supervision
            log.exception("timer tick failed")


async def serve(config: WardConfig, ready_file: Path | None = None) -> None:
    keys = load_keys(config.secrets)
    missing = sorted(set(config.terminals) - set(keys))
    if missing:
        log.warning("no key for terminal(s) %s in %s: they will be refused", ", ".join(missing), config.secrets)
    opened = open_storage(config.database)
    storage = opened.storage
    writer = AsyncWriter(storage)
    hub = WardHub(config, keys, writer, SystemClock())

    calls = await writer.run(storage.open_calls)
    terminals = await writer.run(storage.terminal_rows)
    next_id = await writer.run(storage.next_call_id)
    fx = hub.ward.restore(calls, terminals, next_id)
    fx.merge(hub.ward.note("server_started", pid=os.getpid(), run=storage.run, open_calls=len(hub.ward.calls)))
    if opened.renamed_corrupt is not None:
        text = f"the record {config.database} was unreadable ({storage.corrupt_problem}); it was kept as {opened.renamed_corrupt} and a new record started"
        log.critical(text)
        fx.merge(hub.ward.database_alarm(text))
    await hub.apply(fx)
    log.info("record %s: %d open call(s) restored", config.database, len(hub.ward.calls))

    net = config.network
    terminal_server = TerminalServer(hub)
    tcp_port = await terminal_server.start(net.terminal_host, net.terminal_port)
    udp_transport, udp_port = await start_discovery(hub, net.discovery_host, net.discovery_port, tcp_port)
    timers = asyncio.create_task(run_timers(hub, tick_interval(config)), name="timers")
    runner = web.AppRunner(make_app(hub), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, net.api_host, net.api_port)
    await site.start()
    api_port = runner.addresses[0][1]
    log.info("ward %s: terminals on %s:%d, discovery on %s:%d, console API on http://%s:%d/",
             config.ward, net.terminal_host, tcp_port, net.discovery_host, udp_port, net.api_host, api_port)
    if ready_file is not None:
        ready_file.write_text(json.dumps({"pid": os.getpid(), "terminal_port": tcp_port,
                                          "discovery_port": udp_port, "api_port": api_port}))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()

    log.info("stopping")
    hub.bus.end_all()
    timers.cancel()
    udp_transport.close()
    await terminal_server.stop()
    await runner.cleanup()
    await hub.record("server_stopped", open_calls=len(hub.ward.calls))
    writer.close()
