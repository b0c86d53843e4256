"""`wardcall update`: build the package here, sign it with the ward's private key (this machine,
the technician's account: the server never needs it), have the running server update the
terminals, follow the job and print the outcome (docs/DEPLOY.md, "Over-the-air updates").
`wardcall update keygen` makes the ward's key pair."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from . import signing
from .client import UpdateClient
from .errors import OtaError
from .jobs import DEFAULT_TRIAL_S
from .package import Package, build_package

STATE_WORDS = {"ok": "ok", "rolled_back": "ROLLED BACK", "failed": "FAILED", "skipped": "skipped"}


def format_table(job: dict[str, Any]) -> str:
    rows = [("device", "result", "from", "now", "detail")]
    for d in job["devices"]:
        rows.append((d["device"], STATE_WORDS.get(d["state"], d["state"]), d["from"] or "?",
                     d["version"] or "?", d["detail"]))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows]
    return "\n".join(lines) + "\n"


def run_update(url: str, user: str | None, password: str | None, package: Package, devices: list[str] | None,
               trial_s: int = DEFAULT_TRIAL_S, parallel: int = 4, keep_going: bool = False, force: bool = False,
               timeout: float = 900, out: Any = None, poll_s: float = 0.5,
               allow_downgrade: bool = False) -> dict[str, Any]:
    """Start the update of a signed package at the server and follow it, printing progress lines;
    returns the job."""
    out = out or sys.stdout
    client = UpdateClient(url, user, password)
    client.login()
    job = client.start(package, devices, trial_s, parallel, keep_going, force, allow_downgrade)
    print(f"update {job['job']}: firmware {package.version} serial {package.serial} ({len(package.files)} file(s), "
          f"{package.size} bytes) to {', '.join(d['device'] for d in job['devices'])}", file=out)
    if job.get("override"):
        print(f"update {job['job']}: {job['override']}", file=out)
    seen: dict[str, tuple[str, str, int]] = {}
    deadline = time.monotonic() + timeout
    while True:
        for d in job["devices"]:
            pct = 100 * d["sent"] // d["total"] if d["total"] else 0
            # a line per change of state or detail, and per quarter sent
            key = (d["state"], d["detail"], pct // 25 if d["state"] == "sending" else 0)
            if seen.get(d["device"]) != key:
                seen[d["device"]] = key
                progress = f" {pct}%" if d["state"] == "sending" else ""
                print(f"  {d['device']}: {d['state']}{progress} {d['detail']}".rstrip(), file=out)
                out.flush()
        if job["done"]:
            break
        if time.monotonic() > deadline:
            raise OtaError(f"update {job['job']} still running after {timeout:g} s (see GET /api/ota/updates/{job['job']})")
        time.sleep(poll_s)
        job = client.job(job["job"])
    if job.get("stopped"):
        print(f"update {job['job']}: {job['stopped']} (use --keep-going to go on after a failure)", file=out)
    print(format_table(job), end="", file=out)
    return job


def cmd_keygen(ward: Any, out: Any) -> int:
    kid = signing.generate_keys(ward.ota.private_key, ward.ota.public_key)
    print(f"update key {kid}: private key {ward.ota.private_key} (mode 0600: keep it on the technician's "
          f"machine, never on the ward PC), public key {ward.ota.public_key}", file=out)
    print("next: `wardcall deploy` every terminal (it installs the public key); the server reads the public key "
          "from [ota] public_key; `wardcall update` signs with the private key", file=out)
    return 0


def sign_for_update(ward: Any, package: Package, key_path: str | None = None) -> Package:
    """The package signed with the ward's private key and a new serial."""
    private = Path(key_path) if key_path else ward.ota.private_key
    key = signing.load_private_key(private)
    return signing.sign(package, key, signing.next_serial(private))


def cmd_update(args: Any) -> int:
    from ..config import ConfigError, load_config
    from ..deploy.ward_bridge import host_url
    try:
        ward = load_config(Path(args.config))
        if args.action == "keygen":
            return cmd_keygen(ward, sys.stdout)
        if not args.all and not args.device:
            raise OtaError("name the terminals with --device ID (repeatable) or pass --all")
        package = sign_for_update(ward, build_package(args.firmware, compile=args.package == "mpy"), args.key)
        devices = None if args.all else args.device
        ward_url = host_url(ward)       # (and the ward's CA trusted, for an https console)
        job = run_update(args.host_url or ward_url, args.host_user, os.environ.get("WARDCALL_HOST_PASSWORD"),
                         package, devices, trial_s=args.trial_s, parallel=args.parallel,
                         keep_going=args.keep_going, force=args.force, timeout=args.timeout,
                         allow_downgrade=args.allow_downgrade)
    except (OtaError, ConfigError) as exc:
        print(f"wardcall update: {exc}", file=sys.stderr)
        return 2
    return 0 if all(d["state"] in ("ok", "skipped") for d in job["devices"]) else 1


def register(sub: Any) -> None:
    p = sub.add_parser("update", help="update the firmware of online terminals over the air",
                       description="Sign the firmware with the ward's private key and have the server update the "
                       "terminals; `wardcall update keygen --config WARD.toml` makes the ward's key pair.")
    p.add_argument("action", nargs="?", choices=["keygen"],
                   help="keygen: make the ward's update signing key pair ([ota] private_key, public_key)")
    p.add_argument("--config", required=True, help="the ward TOML file")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--device", action="append", help="a terminal to update (repeatable)")
    who.add_argument("--all", action="store_true", help="every terminal online now")
    p.add_argument("--firmware", default=None, help="firmware folder (default: this checkout's firmware/)")
    shipped = p.add_mutually_exclusive_group()
    shipped.add_argument("--mpy", dest="package", action="store_const", const="mpy", default="mpy",
                         help="ship lib/*.mpy compiled by mpy-cross, as `wardcall deploy` installs it (the default)")
    shipped.add_argument("--sources", dest="package", action="store_const", const="sources",
                         help="ship the .py sources (a board whose MicroPython does not take this .mpy version); "
                         "the board compiles them at its first boot, which needs more heap than a terminal may have")
    p.add_argument("--trial-s", type=int, default=DEFAULT_TRIAL_S,
                   help="the new firmware must reach the host within this many seconds or it rolls back (5-600)")
    p.add_argument("--parallel", type=int, default=4, help="terminals updated at the same time")
    p.add_argument("--keep-going", action="store_true", help="go on after a terminal fails or rolls back")
    p.add_argument("--force", action="store_true", help="also terminals that already run this version")
    p.add_argument("--key", default=None, help="the private signing key (default: [ota] private_key of the ward TOML)")
    p.add_argument("--allow-downgrade", action="store_true",
                   help="skip the server's check against the serials it remembers (recorded); terminals still "
                   "refuse a serial that is not newer than theirs")
    p.add_argument("--timeout", type=float, default=1800.0, help="give up following the job after this many seconds")
    p.add_argument("--host-url", default=None, help="the host's API (default: from the ward TOML)")
    p.add_argument("--host-user", default=os.environ.get("WARDCALL_HOST_USER"),
                   help="console user (password in $WARDCALL_HOST_PASSWORD)")
    p.set_defaults(func=cmd_update)
