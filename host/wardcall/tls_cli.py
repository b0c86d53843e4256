"""`wardcall ca`: the ward's certificate authority (docs/HOST.md, "TLS").

    wardcall ca init   --config ward.toml          the CA (key 0600) and the host's certificate
    wardcall ca export --config ward.toml [--der] [--out FILE]   the CA for ward PCs and phones
    wardcall ca renew  --config ward.toml          a new host certificate (the running host loads it)
    wardcall ca show   --config ward.toml          what is there, valid until when, fingerprints
"""
from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from .config import load_config
from .tls import TlsError, ca_certificate, export_ca, host_certificate, info, init_ca, issue_host_certificate


def _config(args: argparse.Namespace):
    return load_config(Path(args.config))


def cmd_init(args: argparse.Namespace) -> int:
    config = _config(args)
    ca, host = init_ca(config)
    print(f"ward CA created: {config.tls.ca_cert} (its key {config.tls.ca_key}, mode 0600)\n  {ca.text()}")
    print(f"host certificate: {config.tls.cert} for {', '.join(host.names)}\n  {host.text()}")
    print("install the CA on ward PCs and phones: wardcall ca export --config "
          f"{args.config} --out ward-ca.pem (or --der); terminals get it from wardcall provision")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    config = _config(args)
    data = export_ca(config.tls, "der" if args.der else "pem")
    cert = info(ca_certificate(config.tls))
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
    print(f"the ward CA ({'DER' if args.der else 'PEM'}) written to {where}\n  {cert.text()}\n"
          f"  public key SHA-256 (base64): {cert.spki_sha256}", file=sys.stderr)
    return 0


def cmd_renew(args: argparse.Namespace) -> int:
    config = _config(args)
    host = issue_host_certificate(config)
    print(f"host certificate renewed: {config.tls.cert} for {', '.join(host.names)}\n  {host.text()}\n"
          "a running host loads it within a minute")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    config = _config(args)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca = info(ca_certificate(config.tls))
    print(f"ward CA {config.tls.ca_cert}: {ca.text()}\n  public key SHA-256 (base64): {ca.spki_sha256}\n"
          f"  key {'at ' + str(config.tls.ca_key) if config.tls.ca_key.exists() else 'not on this machine'}")
    host = info(host_certificate(config.tls))
    left = (host.not_after - now).days
    print(f"host certificate {config.tls.cert}: {host.text()}\n  names: {', '.join(host.names)}; "
          f"{'EXPIRED' if left < 0 else f'{left} day(s) left'}; terminals verify {config.tls.name}")
    print(f"terminals: {config.tls.terminals}; console: {config.tls.console}")
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
        q.add_argument("--config", required=True, help="the ward TOML file")
        if name == "export":
            q.add_argument("--der", action="store_true", help="DER (binary) instead of PEM")
            q.add_argument("--out", help="write to this file (default: standard output)")
        q.set_defaults(func=_guarded(func))


def _guarded(func):
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except TlsError as exc:
            print(f"wardcall ca {args.ca_command}: {exc}", file=sys.stderr)
            return 2
    return run
