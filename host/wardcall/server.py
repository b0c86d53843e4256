"""`wardcall serve`: one asyncio process with the terminal sessions (TCP), discovery (UDP),
the console API (HTTP) and the timers, over one record.

One host per record: the record's lock is taken before anything is written, and a second host
stops with one line. A record that cannot be written, or a port in use, stops the host at start
with one line and exit status 2 (cli.py): a host that cannot write cannot acknowledge any call,
and the terminals keep their lamps and buzzer working locally.
"""
from __future__ import annotations

import asyncio
import errno
import gc
import json
import logging
import os
import resource
import signal
import sys
from pathlib import Path
from typing import Awaitable, Callable, TypeVar

from aiohttp import web

from .clock import SystemClock
from .config import ConfigError, WardConfig
from .discovery import start_discovery
from .federation.peer import terminal_port_answers
from .federation.publisher import start_federation
from .hub import WardHub
from .integrations.service import Integrations
from .looplag import start_if_asked
from .devicekeys import load_keys
from .record_guard import RecordLock, check_identity
from .storage import AsyncWriter, open_storage
from .terminal_server import TerminalServer
from .tls import CERT_ALARM, CertificateWatch, HostTls, TlsError, bound_tls_read_buffers, prepare_host
from .web import make_app
from .web.listener import start_api_listener

log = logging.getLogger("wardcall.server")

STOP_RECORD_TIMEOUT_S = 5.0     # at the end, what is held gets this long to reach the record
CERT_CHECK_S = 60.0             # how often the host certificate is checked (renewal, a new file)
STANDBY_CHECK_S = 2.0           # how often a serving primary looks whether its standby serves too

T = TypeVar("T")


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


GC_THRESHOLDS = (20_000, 2, 100)
# The record is written on its own thread; each SQLite step lets the GIL go, and while the loop
# computes, getting it back waits the switch interval: 5 ms by default, so a commit of three
# lines took 22 ms with the loop busy, 4.4 ms at 1 ms (bench/bench_record_writes.py).
SWITCH_INTERVAL_S = 0.001


def settle_collector() -> None:
    """Once started: what start-up built (the configuration, the ward's state, modules, the web
    app) lives as long as the process, so it is moved out of the collector's sight (gc.freeze).
    The thresholds go up: at 5,000 terminals every session has a read, a future and a few
    coroutines in flight, which the default thresholds (700, 10, 10) promoted to the oldest
    generation many times a second, so a full collection walked ~230,000 objects every few
    seconds (100-450 ms each in 12 s windows, bench/bench_capacity.py) and freed nearly nothing.
    The thresholds count allocations less deallocations: at 20,000 steady traffic (as many
    frames' objects freed as made) seldom starts a collection at all; measured the same way, no
    collection in 12-20 s windows. Garbage cycles are still collected, only less often.
    The middle threshold is low (2): a reconnect storm makes objects that nearly all survive,
    and with 20 young collections between two of the middle generation that one walked all of
    them at once (119-137 ms at 5,000 terminals, 3 runs); with 2, 53-111 ms (6 runs), steady
    state unchanged (no collection)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def raise_descriptor_limit(needed: int = 0) -> int:
    """Every terminal is a socket: the soft limit on open files goes up to the hard one, and the
    hard one too when a ward needs more and the host may raise it (root or CAP_SYS_RESOURCE; as
    far as the kernel's fs.nr_open): 20,000 terminals do not fit the common hard limit of 20,000."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:
            with open("/proc/sys/fs/nr_open") as f:
                ceiling = int(f.read())
        except (OSError, ValueError):
            ceiling = needed
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, min(needed, ceiling)))
            hard = min(needed, ceiling)
        except (ValueError, OSError) as exc:
            log.warning("a ward of this size needs %d open files; the hard limit is %d and cannot be raised (%s): "
                        "raise it for the service (e.g. systemd LimitNOFILE=)", needed, hard, exc)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, want, exc)
    return soft


def descriptors_needed(config: WardConfig) -> int:
    """A socket per terminal (a second while a reboot replaces a session), and room for the
    connections before a handshake, consoles, the record and the listeners."""
    return 2 * len(config.terminals) + 4096


async def watch_certificate(hub: WardHub, watch: CertificateWatch) -> None:
    async def report(alarm: str | None) -> None:
        await hub.apply(hub.ward.link_setting_alarm(CERT_ALARM, alarm) if alarm
                        else hub.ward.link_setting_ok(CERT_ALARM, "the host certificate is valid"))
    await watch.run(CERT_CHECK_S, report, log)


async def _listen(config: WardConfig, key: str, host: str, port: int, start: Callable[[], Awaitable[T]]) -> T:
    """Start one listener; a port in use is one line naming it and the key to change."""
    try:
        return await start()
    except OSError as exc:
        host_key = key.replace("_port", "_host")
        if exc.errno == errno.EADDRINUSE:
            problem = f"{host}:{port} is in use (another wardcall serve, or another program): stop it or change [network] {key}"
        elif exc.errno == errno.EACCES:
            problem = f"{host}:{port} may not be used by this user: change [network] {key}"
        elif exc.errno == errno.EADDRNOTAVAIL:
            key = host_key
            problem = f"{host} is not an address of this machine: change [network] {key}"
        else:
            raise
        raise ConfigError(config.path, f"[network] {key}", problem) from None


def _standby_to_watch(config: WardConfig, takeover: list[dict] | None) -> str | None:
    """The standby's terminal address, if this host is a primary told where its standby listens."""
    settings = config.federation
    if takeover is not None or settings is None:
        return None
    return settings.standby_terminal


def _standby_serves(config: WardConfig, address: str) -> ConfigError:
    assert config.federation is not None
    return ConfigError(config.path, "[federation] standby_terminal",
                       f"the standby host serves ward {config.federation.ward_id} (its terminal port "
                       f"{address} answers): this host must not serve too. Start this PC "
                       "as the standby of the serving host, or stop that one first (docs/FEDERATION.md)")


async def _not_while_the_standby_serves(config: WardConfig, takeover: list[dict] | None) -> None:
    """A primary whose standby took over while it was down must not serve as well: the terminals
    would split between two hosts, each with part of the ward's calls."""
    address = _standby_to_watch(config, takeover)
    if address is not None and await terminal_port_answers(address):
        raise _standby_serves(config, address)


async def _yield_if_the_standby_serves(address: str, stop: asyncio.Event) -> bool:
    """While serving, look every STANDBY_CHECK_S whether the standby serves too (it took over
    while the link between the two PCs was cut): if it does, this host stops serving, so that
    its terminals move to the standby (they know both hosts) and announce their calls there,
    the rule a primary follows at its start. True once it has."""
    while True:
        await asyncio.sleep(STANDBY_CHECK_S)
        if await terminal_port_answers(address):
            log.critical("the standby host at %s serves this ward too: this host stops serving, its terminals "
                         "move to the standby", address)
            stop.set()
            return True


async def serve(config: WardConfig, ready_file: Path | None = None, takeover: list[dict] | None = None) -> None:
    """`takeover`: a standby's open calls of the primary it takes over from (federation/standby.py)."""
    await _not_while_the_standby_serves(config, takeover)
    files = raise_descriptor_limit(descriptors_needed(config))
    bound_tls_read_buffers()
    keys = load_keys(config.secrets)
    missing = sorted(set(config.terminals) - set(keys))
    if missing:
        log.warning("no key for terminal(s) %s in %s: they will be refused", ", ".join(missing), config.secrets)
    lock = RecordLock(config.database)
    lock.acquire()              # before anything is written: one host per record
    try:
        try:
            host_tls = prepare_host(config)
        except TlsError as exc:
            raise ConfigError(config.path, "[tls]", str(exc)) from None
        await _serve(config, keys, ready_file, files, host_tls, takeover or [], _standby_to_watch(config, takeover))
    finally:
        lock.release()


async def _serve(config: WardConfig, keys: dict[str, bytes], ready_file: Path | None, files: int,
                 host_tls: HostTls, takeover: list[dict], standby_terminal: str | None) -> None:
    opened = open_storage(config.database)
    storage = opened.storage
    writer = AsyncWriter(storage)
    hub = WardHub(config, keys, writer, SystemClock())

    calls = await writer.run(storage.open_calls)
    terminals = await writer.run(storage.terminal_rows)
    next_id = await writer.run(storage.next_call_id)
    assignments = await writer.run(storage.assignment_rows)
    await writer.load_ceilings()    # a board's new call is then placed without a look-up, even while the record hangs
    fx = hub.ward.restore(calls, terminals, next_id, assignments)
    for row in takeover:        # a standby taking over: the primary's open calls, unless held already
        if not hub.ward.is_open(row["device"], row["call_id"], row.get("hwid") or ""):
            fx.merge(hub.ward.reinstate_call(row))
    fx.merge(hub.ward.note("server_started", pid=os.getpid(), run=storage.run, record=storage.record_id,
                           open_calls=len(hub.ward.calls)))
    fx.merge(hub.ward.check_assignments())
    if opened.renamed_corrupt is not None:
        text = f"the record {config.database} was unreadable ({storage.corrupt_problem}); it was kept as {opened.renamed_corrupt} and a new record started"
        log.critical(text)
        fx.merge(hub.ward.database_alarm(text))
    missing_text = check_identity(config.path, config.database, storage.record_id, storage.new_record)
    if missing_text is not None and opened.renamed_corrupt is None:
        log.critical(missing_text)
        fx.merge(hub.ward.database_alarm(missing_text))

    for line in host_tls.notes:
        log.warning("%s", line)
    for alarm_id, text in host_tls.alarms.items():
        log.warning("%s", text)
        fx.merge(hub.ward.link_setting_alarm(alarm_id, text))
    integrations = Integrations(hub, storage.record_id[:8], storage.run)   # docs/INTEGRATION.md
    hub.observers.append(integrations)

    net = config.network
    terminal_tls, console_tls = host_tls.terminals, host_tls.console
    terminal_server = TerminalServer(hub, terminal_tls)
    runner = web.AppRunner(make_app(hub), access_log=None, shutdown_timeout=2.0)
    udp_transport = None
    timers = None
    listener = None
    cert_watch = None
    federation = None
    try:
        tcp_port = await _listen(config, "terminal_port", net.terminal_host, net.terminal_port,
                                 lambda: terminal_server.start(net.terminal_host, net.terminal_port))
        udp_transport, udp_port = await _listen(config, "discovery_port", net.discovery_host, net.discovery_port,
                                                lambda: start_discovery(hub, net.discovery_host, net.discovery_port, tcp_port))
        await runner.setup()
        listener = await _listen(config, "api_port", net.api_host, net.api_port,
                                 lambda: start_api_listener(runner, net.api_host, net.api_port, net, console_tls))
        api_port = listener.port
        await hub.apply(fx)
        try:
            await integrations.start()
        except OSError as exc:
            raise ConfigError(config.path, "[integrations]", f"cannot listen: {exc.strerror or exc}") from None
        federation = await start_federation(hub)     # None without [federation]
        log.info("record %s: %d open call(s) restored", config.database, len(hub.ward.calls))
        timers = asyncio.create_task(run_timers(hub, tick_interval(config)), name="timers")
        settle_collector()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        hub.loop_probe = start_if_asked(asyncio.get_running_loop())
        if terminal_tls is not None or console_tls is not None:
            cert_watch = asyncio.create_task(watch_certificate(hub, CertificateWatch(config.tls, config.ward, host_tls)),
                                             name="certificate")
        log.info("ward %s: terminals on %s:%d (%s), discovery on %s:%d, console API on %s://%s:%d/ (open-file limit %s)",
                 config.ward, net.terminal_host, tcp_port, "TLS" if terminal_tls else "PLAIN TCP", net.discovery_host,
                 udp_port, "https" if console_tls else "http", net.api_host, api_port,
                 "unlimited" if files == resource.RLIM_INFINITY else files)
        if ready_file is not None:
            ready_file.write_text(json.dumps({"pid": os.getpid(), "terminal_port": tcp_port,
                                              "discovery_port": udp_port, "api_port": api_port,
                                              "console": "https" if console_tls else "http",
                                              "terminals": "tls" if terminal_tls else "plain",
                                              "integrations": integrations.ports}))

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        standby_watch = None
        if standby_terminal is not None:
            standby_watch = asyncio.create_task(_yield_if_the_standby_serves(standby_terminal, stop), name="standby-watch")
        await stop.wait()
        log.info("stopping")
        if standby_watch is not None and standby_watch.done() and standby_watch.result():
            await hub.record("yielded_to_standby", standby=standby_terminal, open_calls=len(hub.ward.calls))
            hub.bus.end_all()
            raise _standby_serves(config, standby_terminal)
        if standby_watch is not None:
            standby_watch.cancel()
        hub.bus.end_all()
    finally:
        if timers is not None:
            timers.cancel()
        if cert_watch is not None:
            cert_watch.cancel()
        if udp_transport is not None:
            udp_transport.close()
        await terminal_server.stop()
        await integrations.stop()
        if listener is not None:
            await listener.close()
        await runner.cleanup()
        if timers is not None:
            await hub.record("server_stopped", open_calls=len(hub.ward.calls))
        if federation is not None:
            await federation.aclose()
        await writer.aclose(STOP_RECORD_TIMEOUT_S)
