"""The `wardcall` command: serve, provision, report, log, status, passwd, check."""
from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from pathlib import Path

from .config import ConfigError, WardConfig, load_config
from .demo import register as register_demo
from .deploy.cli import register as register_deploy
from .ratelog import setup_logging
from .storage import StorageError, open_readonly


# `wardcall status` when no server of this ward answers (0: it runs; 2: a bad configuration)
STATUS_NOT_RUNNING = 3


def _config(args: argparse.Namespace) -> WardConfig:
    return load_config(Path(args.config))


def _listed(names: list[str], most: int = 5) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _terminals_without_keys(config: WardConfig) -> list[str]:
    """The ward's terminals that have no key in the keys file (ConfigError if it is unreadable)."""
    from .devicekeys import load_keys
    return sorted(set(config.terminals) - set(load_keys(config.secrets)))


def _refuse_if_no_terminal_has_a_key(config: WardConfig, missing: list[str]) -> None:
    """Terminals are provisioned but none has a key (the keys file is missing, or is another
    ward's): the host would refuse every bed. That is a configuration error, before anything
    starts. (Some without a key: the host starts for the others and logs the rest.)"""
    if not config.terminals or len(missing) < len(config.terminals):
        return
    if not config.secrets.exists():
        problem = "the device keys file is missing"
    else:
        problem = "the device keys file has no key for any terminal of the ward"
    raise ConfigError(config.secrets, "", f"{problem}, but {config.path} has {len(missing)} terminal(s) "
                      f"({_listed(missing)}): the host would refuse every one; restore the file from a "
                      "backup, or give each terminal a new key (wardcall provision --rekey) and deploy it")


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve
    setup_logging(args.log_level)
    config = _config(args)
    # a bad keys file is a config error, reported before anything starts
    _refuse_if_no_terminal_has_a_key(config, _terminals_without_keys(config))
    asyncio.run(serve(config, Path(args.ready_file) if args.ready_file else None))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    config = _config(args)
    missing = _terminals_without_keys(config)
    _refuse_if_no_terminal_has_a_key(config, missing)
    if missing:
        raise ConfigError(config.secrets, "", f"no key for terminal(s) {_listed(missing)} of {config.path}: the host "
                          "would refuse them; give each a key (wardcall provision --rekey) and deploy it")
    print(f"{config.path}: ward {config.ward}: {len(config.rooms)} room(s), {len(config.terminals)} terminal(s), {len(config.users)} user(s)")
    return 0


def cmd_provision(args: argparse.Namespace) -> int:
    from .provision import ProvisionError, provision
    try:
        board = provision(Path(args.config), args.device, args.room, args.bed, Path(args.out),
                          wifi_ssid=args.wifi_ssid, wifi_password=args.wifi_password, host=args.host, rekey=args.rekey,
                          standby_host=args.standby_host)
    except ProvisionError as exc:
        print(f"wardcall provision: {exc}", file=sys.stderr)
        return 2
    print(f"terminal {board['device_id']} (room {board['room']}, bed {board['bed']}) provisioned; board config in {Path(args.out) / 'config.json'}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .record_queries import calls_placed
    from .report import as_csv, as_table, parse_since, summarise
    config = _config(args)
    try:
        since = parse_since(args.since) if args.since else None
        until = parse_since(args.until) if args.until else None
    except ValueError as exc:
        print(f"wardcall report: {exc}", file=sys.stderr)
        return 2
    conn = open_readonly(config.database)
    rows = summarise(config, calls_placed(conn, since, until))
    sys.stdout.write(as_csv(rows) if args.csv else as_table(rows))
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    from .record_queries import recent_events
    from .record_text import format_event
    config = _config(args)
    conn = open_readonly(config.database)
    last_id = 0
    for row in recent_events(conn, last=args.lines):
        print(format_event(row))
        last_id = row["id"]
    while args.follow:
        sys.stdout.flush()
        time.sleep(0.5)
        for row in recent_events(conn, after_id=last_id):
            print(format_event(row))
            last_id = row["id"]
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from .record_text import check_server, status_text
    config = _config(args)
    conn = open_readonly(config.database)
    while True:
        server = check_server(config, conn)
        text = status_text(config, conn, server)
        if not args.watch:
            sys.stdout.write(text)
            return 0 if server.running else STATUS_NOT_RUNNING
        sys.stdout.write("\x1b[H\x1b[2J" + text)
        sys.stdout.flush()
        time.sleep(args.watch)


def cmd_passwd(args: argparse.Namespace) -> int:
    from .passwords import hash_password
    if args.stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("wardcall passwd: the passwords differ", file=sys.stderr)
            return 2
    if len(password) < 8:
        print("wardcall passwd: use at least 8 characters", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wardcall", description="wardcall nurse call: the nurse-station host")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", required=True, help="the ward TOML file")
        return p

    p = with_config(sub.add_parser("serve", help="run the host server"))
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--ready-file", help="write the listening ports here as JSON once ready")
    p.set_defaults(func=cmd_serve)

    p = with_config(sub.add_parser("check", help="check the configuration and keys"))
    p.set_defaults(func=cmd_check)

    p = with_config(sub.add_parser("provision", help="add a terminal, make its key and its config.json"))
    p.add_argument("--device", required=True)
    p.add_argument("--room", required=True)
    p.add_argument("--bed", default="")
    p.add_argument("--wifi-ssid", default="")
    p.add_argument("--wifi-password", default="")
    p.add_argument("--host", default=None, help="host address for the board (default: find it by UDP discovery)")
    p.add_argument("--standby-host", default=None, metavar="HOST[:PORT]",
                   help="the standby ward host the board tries after 3 failed sessions with --host "
                   "(port: the ward's terminal_port by default)")
    p.add_argument("--rekey", action="store_true", help="give an already provisioned terminal a new key")
    p.add_argument("--out", required=True, help="directory for config.json")
    p.set_defaults(func=cmd_provision)

    p = with_config(sub.add_parser("report", help="response times per call type, room and shift"))
    p.add_argument("--csv", action="store_true")
    p.add_argument("--since", help="e.g. 7d, 12h, 2025-11-01, 2025-11-01T06:00")
    p.add_argument("--until")
    p.set_defaults(func=cmd_report)

    p = with_config(sub.add_parser("log", help="the record's latest events"))
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-n", "--lines", type=int, default=50)
    p.set_defaults(func=cmd_log)

    p = with_config(sub.add_parser("status", help="the ward now: open calls and terminals"))
    p.add_argument("--watch", type=float, nargs="?", const=1.0, default=None, metavar="SECONDS")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("passwd", help="hash a console user's password for the ward TOML")
    p.add_argument("--stdin", action="store_true", help="read the password from standard input")
    p.set_defaults(func=cmd_passwd)

    register_deploy(sub)        # flash, deploy, fleet deploy, monitor
    from .federation.demo import run_hospital
    register_demo(sub, run_hospital)    # demo: a whole ward on this machine (`make run`); --hospital
    from .federation.hospital import register as register_hospital
    register_hospital(sub)      # hospital: every ward's board over NATS (docs/FEDERATION.md)
    from .federation.standby import register as register_standby
    register_standby(sub)       # standby: a second ward host that takes over when the primary dies
    from .ota.cli import register as register_update
    register_update(sub)        # update: over-the-air firmware update of online terminals
    from .tls_cli import register as register_ca
    register_ca(sub)            # ca: the ward CA, the host certificate (TLS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, StorageError) as exc:
        print(f"wardcall {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
