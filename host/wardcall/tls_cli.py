"""`wardcall ca`: the ward's certificate authority (docs/HOST.md, "TLS").

    wardcall ca init   --config ward.toml          the CA (key 0600) and the host's certificate
    wardcall ca export --config ward.toml [--der] [--out FILE]   the CA for ward PCs and phones
    wardcall ca renew  --config ward.toml          a new host certificate (the running host loads it)
    wardcall ca show   --config ward.toml          what is there, valid until when, fingerprints

The hospital console's TOML (docs/FEDERATION.md) works the same way: its own CA, for its HTTPS.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .config import ConfigError, TlsSettings, load_config
from .tls import TlsError, ca_certificate, create_ca, export_ca, host_certificate, info, issue_certificate


@dataclass(frozen=True)
class _Owner:
    """Whose CA: a ward's, or the hospital console's."""
    tls: TlsSettings
    name: str
    ward: bool


def _config(args: argparse.Namespace) -> _Owner:
    path = Path(args.config)
    try:
        hospital = "hospital" in tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        hospital = False            # load_config says what is wrong with it
    if hospital:
        from .federation.hospital_config import load_hospital
        h = load_hospital(path)
        assert h.tls is not None
        return _Owner(h.tls, h.name, False)
    config = load_config(path)
    return _Owner(config.tls, config.ward, True)


def cmd_init(args: argparse.Namespace) -> int:
    owner = _config(args)
    ca, host = create_ca(owner.tls, owner.name)
    what = "ward" if owner.ward else "hospital console"
    print(f"{what} CA created: {owner.tls.ca_cert} (its key {owner.tls.ca_key}, mode 0600)\n  {ca.text()}")
    print(f"host certificate: {owner.tls.cert} for {', '.join(host.names)}\n  {host.text()}")
    print(f"install the CA on the {'ward ' if owner.ward else ''}PCs and phones that open the console: wardcall ca export --config "
          f"{args.config} --out {'ward' if owner.ward else 'hospital'}-ca.pem (or --der)"
          + ("; terminals get it from wardcall provision" if owner.ward else ""))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    owner = _config(args)
    data = export_ca(owner.tls, "der" if args.der else "pem")
    cert = info(ca_certificate(owner.tls))
    if args.out:
        Path(args.out).write_bytes(data)
        where = args.out
    elif args.der and sys.stdout.isatty():
        print("wardcall ca export: DER is binary: give --out FILE", file=sys.stderr)
        return 2
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        where = "standard output"
    print(f"the {'ward' if owner.ward else 'hospital console'} CA ({'DER' if args.der else 'PEM'}) written to {where}\n  {cert.text()}\n"
          f"  public key SHA-256 (base64): {cert.spki_sha256}", file=sys.stderr)
    return 0


def cmd_renew(args: argparse.Namespace) -> int:
    owner = _config(args)
    host = issue_certificate(owner.tls, owner.name)
    print(f"host certificate renewed: {owner.tls.cert} for {', '.join(host.names)}\n  {host.text()}\n"
          "a running host loads it within a minute")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    owner = _config(args)
    tls = owner.tls
    now = datetime.datetime.now(datetime.timezone.utc)
    ca = info(ca_certificate(tls))
    print(f"{'ward' if owner.ward else 'hospital console'} CA {tls.ca_cert}: {ca.text()}\n"
          f"  public key SHA-256 (base64): {ca.spki_sha256}\n"
          f"  key {'at ' + str(tls.ca_key) if tls.ca_key.exists() else 'not on this machine'}")
    host = info(host_certificate(tls))
    left = (host.not_after - now).days
    print(f"host certificate {tls.cert}: {host.text()}\n  names: {', '.join(host.names)}; "
          f"{'EXPIRED' if left < 0 else f'{left} day(s) left'}"
          + (f"; terminals verify {tls.name}" if owner.ward else ""))
    print(f"terminals: {tls.terminals}; console: {tls.console}" if owner.ward else f"console: {tls.console}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("ca", help="the ward's certificate authority (TLS for terminals and console)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="ca_command", required=True)
    for name, func, text in (("init", cmd_init, "create the ward CA and the host certificate"),
                             ("export", cmd_export, "write the CA certificate (PEM, or DER) for PCs and phones"),
                             ("renew", cmd_renew, "issue a new host certificate"),
                             ("show", cmd_show, "the CA and the host certificate")):
        q = sub.add_parser(name, help=text)
        q.add_argument("--config", required=True, help="the ward TOML file (or the hospital console's)")
        if name == "export":
            q.add_argument("--der", action="store_true", help="DER (binary) instead of PEM")
            q.add_argument("--out", help="write to this file (default: standard output)")
        q.set_defaults(func=_guarded(func))


def _guarded(func):
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (TlsError, ConfigError) as exc:
            print(f"wardcall ca {args.ca_command}: {exc}", file=sys.stderr)
            return 2
    return run
