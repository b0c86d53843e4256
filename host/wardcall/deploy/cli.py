"""The deploy commands of the `wardcall` CLI.

    from wardcall.deploy.cli import register
    register(subparsers)      # subparsers = parser.add_subparsers(...)
    args = parser.parse_args(); sys.exit(args.func(args))

Adds `flash`, `deploy`, `fleet deploy` and `monitor`. Every handler returns an exit code: 0 ok,
1 failed (the message says what and how to fix it), 2 bad usage.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import IO, TYPE_CHECKING, Any, Callable

from .. import checkout as paths
from .errors import DeployError

if TYPE_CHECKING:
    from ..config import WardConfig
    from .deploy import DeployRequest

DEFAULT_CONFIG = os.environ.get("WARDCALL_CONFIG", "ward.toml")


def _fail(err: DeployError, stream: IO[str] | None = None) -> int:
    stream = stream or sys.stderr
    stream.write("wardcall: error: %s\n" % err)
    stream.flush()
    return 1


def _log(args: argparse.Namespace) -> Callable[[str], None] | None:
    if not getattr(args, "verbose", False):
        return None

    def log(msg: str) -> None:
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()
    return log


# ---------------------------------------------------------------- flash

def cmd_flash(args: argparse.Namespace) -> int:
    from .flash import erase_args, flash, load_flash_info, write_args
    try:
        if args.dry_run:
            info = load_flash_info(args.board)
            if not args.no_erase:
                print(" ".join(erase_args(info["chip"], args.port, args.baud)))
            print(" ".join(write_args(info["chip"], args.port, info["flash_offset"], args.firmware,
                                      args.baud)))
            return 0
        flash(args.port, args.board, args.firmware, baud=args.baud, erase=not args.no_erase)
    except DeployError as e:
        return _fail(e)
    print("MicroPython written to the %s on %s. Next: wardcall deploy --port %s --device ID"
          % (args.board, args.port, args.port))
    return 0


# ---------------------------------------------------------------- deploy

def _add_deploy_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=DEFAULT_CONFIG,
                   help="ward configuration TOML (default: %(default)s or $WARDCALL_CONFIG)")
    p.add_argument("--host-url", help="host HTTP API to confirm the terminal online "
                   "(default: from the ward configuration's [network] api_host/api_port)")
    p.add_argument("--host-user", default=os.environ.get("WARDCALL_HOST_USER"),
                   help="console user to read the host's state (password in $WARDCALL_HOST_PASSWORD)")
    p.add_argument("--no-wait", action="store_true",
                   help="do not wait for the terminal to come online at the host")
    p.add_argument("--online-timeout", type=float, default=30.0, metavar="S",
                   help="how long to wait for the terminal online (default %(default)s s)")
    p.add_argument("--no-compile", action="store_true",
                   help="copy lib/*.py sources instead of .mpy (removes the .mpy twins)")
    p.add_argument("--expect-mpy", type=int, metavar="N",
                   help="the .mpy major version the board must load (default: what mpy-cross makes)")
    p.add_argument("--min-free", type=int, default=None, metavar="BYTES",
                   help="flash that must stay free after the copy (default 16384)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="limit for each mpremote step (default %(default)s s)")
    p.add_argument("--wifi-ssid", default=os.environ.get("WARDCALL_WIFI_SSID"),
                   help="Wi-Fi network for the terminal (or $WARDCALL_WIFI_SSID)")
    p.add_argument("--wifi-password", help="Wi-Fi password (or $WARDCALL_WIFI_PASSWORD)")
    p.add_argument("--terminal-host", help="host address written to config.json (default: none, "
                   "the terminal finds the host by discovery)")
    p.add_argument("--standby-host", metavar="HOST[:PORT]", help="the standby ward host written to "
                   "config.json, tried after 3 failed sessions with --terminal-host")
    p.add_argument("-v", "--verbose", action="store_true", help="show every mpremote step")


def _provision_options(args: argparse.Namespace) -> dict[str, str]:
    opts: dict[str, str] = {}
    if args.wifi_ssid:
        opts["wifi_ssid"] = args.wifi_ssid
    pw = args.wifi_password or os.environ.get("WARDCALL_WIFI_PASSWORD")
    if pw:
        opts["wifi_password"] = pw
    if args.terminal_host:
        opts["host"] = args.terminal_host
    if args.standby_host:
        opts["standby_host"] = args.standby_host
    return opts


def _request_maker(args: argparse.Namespace, ward: WardConfig) -> functools.partial[DeployRequest]:
    """DeployRequest(port, device, board=...) with everything else from the command line and the
    ward (read once: the update key, the host's address, the device configs)."""
    from .deploy import DEFAULT_MIN_FREE, DeployRequest
    from .ward_bridge import host_url, ota_key
    ward_url = host_url(ward)           # (and the ward's CA trusted, for an https console)
    return functools.partial(
        DeployRequest,
        device_config=_config_provider(args, ward),
        ota_key=ota_key(ward),
        compile=not args.no_compile,
        host_url=args.host_url or ward_url,
        online_timeout=args.online_timeout,
        expect_mpy=args.expect_mpy,
        min_free=DEFAULT_MIN_FREE if args.min_free is None else args.min_free,
        timeout=args.timeout,
        wait=not args.no_wait,
        host_user=args.host_user,
        host_password=os.environ.get("WARDCALL_HOST_PASSWORD"),
    )


def _config_provider(args: argparse.Namespace, ward: WardConfig) -> Callable[[str], dict[str, Any]]:
    from .ward_bridge import device_config
    opts = _provision_options(args)
    return lambda device: device_config(ward, device, **opts)


def cmd_deploy(args: argparse.Namespace) -> int:
    from .deploy import deploy
    from .ward_bridge import load_ward
    try:
        ward = load_ward(args.config)
        request = _request_maker(args, ward)(args.port, args.device, board=args.board)
        print("deploying %s to %s ..." % (args.device, args.port), flush=True)
        r = deploy(request, log=_log(args))
    except DeployError as e:
        return _fail(e)
    for w in r.warnings:
        print("warning: %s" % w)
    print("%s on %s: %s, MicroPython %s on %s, %s (%.1f s)" % (
        r.device, r.port, r.reason, r.version, r.board,
        "online at the host" if r.online else "not checked at the host", r.seconds))
    return 0


# ---------------------------------------------------------------- fleet

def cmd_fleet_deploy(args: argparse.Namespace) -> int:
    from .deploy import Result, deploy
    from .fleet import Progress, discover_ports, fleet_deploy, load_plan, summary_table
    from .ward_bridge import load_ward
    try:
        ward = load_ward(args.config)
        entries = load_plan(args.plan) if args.plan else []
        if args.discover:
            planned = {e["port"] for e in entries}
            ports = [p for p in discover_ports() if p not in planned]
            devices = [d for d in (args.devices or "").split(",") if d]
            if len(devices) < len(ports):
                raise DeployError(
                    "found %d unplanned board port(s) (%s) but --devices names %d device id(s)"
                    % (len(ports), ", ".join(ports), len(devices)), code="plan",
                    fix="give one device id per port with --devices, in port order")
            entries += [{"port": p, "device": d} for p, d in zip(ports, devices)]
        if not entries:
            raise DeployError("no boards to deploy", code="plan",
                              fix="pass --plan PLAN (TOML or CSV) or --discover --devices ...")
        make = _request_maker(args, ward)
    except DeployError as e:
        return _fail(e)
    log = _log(args)

    def one(entry: dict[str, str]) -> Result:
        return deploy(make(entry["port"], entry["device"], board=entry.get("board") or args.board), log=log)

    if make.keywords["ota_key"] is None:
        print("warning: the ward has no over-the-air update key: these terminals will refuse every update "
              "(make it with `wardcall update keygen`, then deploy again)", flush=True)
    print("deploying %d boards, %d at a time" % (len(entries), args.workers), flush=True)
    results = fleet_deploy(entries, one, workers=args.workers, progress=Progress(len(entries)))
    print(summary_table(results), flush=True)
    return 0 if all(r.ok for r in results) else 1


# ---------------------------------------------------------------- monitor

def cmd_monitor(args: argparse.Namespace) -> int:
    from .monitor import list_ports, monitor
    if args.list:
        ports = list_ports()
        for dev, desc, hwid in ports:
            print("%-20s %s  %s" % (dev, desc, hwid))
        if not ports:
            print("no serial ports found (emulated boards are socket://127.0.0.1:PORT)")
        return 0
    if not args.port:
        return _fail(DeployError("monitor needs --port (or --list)", fix="wardcall monitor --list"))
    try:
        monitor(args.port, baud=args.baud, duration=args.duration, raw=args.raw, reset=args.reset)
    except DeployError as e:
        return _fail(e)
    except KeyboardInterrupt:
        pass
    return 0


# ---------------------------------------------------------------- registration

def register(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add flash, deploy, fleet (fleet deploy) and monitor to an argparse subparsers object."""
    boards = list(paths.REAL_BOARDS)

    p = subparsers.add_parser(
        "flash", help="erase a board and write MicroPython with esptool",
        description="Erase the flash and write MicroPython at the offset that "
        "boards/<board>/flash.json records. Put the board in bootloader mode if it does not "
        "enter it by itself (hold BOOT, tap EN/RST).")
    p.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0")
    p.add_argument("--board", required=True, choices=boards)
    p.add_argument("--firmware", required=True, help="MicroPython .bin for that board")
    p.add_argument("--baud", type=int, default=460800, help="flashing baud rate (default %(default)s)")
    p.add_argument("--no-erase", action="store_true", help="write without erasing first")
    p.add_argument("--dry-run", action="store_true", help="print the esptool commands only")
    p.set_defaults(func=cmd_flash)

    p = subparsers.add_parser(
        "deploy", help="put the bed terminal firmware and config on one board",
        description="Copy the firmware (compiled for the board's .mpy version) and the device's "
        "config.json to the board on PORT, reset it and confirm it online at the host.")
    p.add_argument("--port", required=True,
                   help="/dev/ttyUSB0 for a real board, socket://127.0.0.1:PORT for an emulated one")
    p.add_argument("--device", required=True, help="device id, as provisioned (e.g. bed-101-1)")
    p.add_argument("--board", choices=boards + ["emulator"],
                   help="board type (default: detected from the board)")
    _add_deploy_options(p)
    p.set_defaults(func=cmd_deploy)

    fleet = subparsers.add_parser("fleet", help="work on many boards at once")
    fleet_sub = fleet.add_subparsers(dest="fleet_command", metavar="COMMAND")
    fleet.set_defaults(func=lambda a: (fleet.print_help(sys.stderr), 2)[1])
    p = fleet_sub.add_parser(
        "deploy", help="deploy to many boards in parallel",
        description="Deploy every board of a plan (TOML [[board]] port/device tables, or CSV "
        "port,device[,board]) in parallel; prints a summary per device. Exit code 1 if any failed.")
    p.add_argument("--plan", help="plan file (.toml or .csv)")
    p.add_argument("--discover", action="store_true",
                   help="also deploy USB serial boards not in the plan (with --devices)")
    p.add_argument("--devices", help="device ids for discovered ports, comma separated, in port order")
    p.add_argument("--workers", type=int, default=4, help="boards at once (default %(default)s)")
    p.add_argument("--board", choices=boards + ["emulator"],
                   help="board type for entries that do not name one (default: detected)")
    _add_deploy_options(p)
    p.set_defaults(func=cmd_fleet_deploy)

    p = subparsers.add_parser(
        "monitor", help="the board's serial console",
        description="Show the board's console and send keys to it. Ctrl-] quits; Ctrl-T R resets "
        "a real board.")
    p.add_argument("--port", help="serial port or socket://127.0.0.1:PORT")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--list", action="store_true", help="list serial ports and exit")
    p.add_argument("--reset", action="store_true", help="reset the board (DTR/RTS) when opening")
    p.add_argument("--raw", action="store_true", help="do not translate line endings")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.set_defaults(func=cmd_monitor)
    return subparsers


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (python -m wardcall.deploy.cli) until the lead wires register() in."""
    parser = argparse.ArgumentParser(prog="wardcall")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    register(sub)
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
