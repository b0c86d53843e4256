"""nats-server configurations for the hospital: a hub node (of the hospital's cluster, JetStream
domain `hub`, a leaf node listener for the wards) and a ward's leaf node (its own JetStream
domain `ward-<id>`, so the ward's stream and bucket live on the ward's PC and keep working while
the hub is away), and NatsServer, which runs one with Debian's `nats-server` (demo, tests, bench).

Across the hospital network (a ward's leaf node to the hub, the hospital console to the hub, the
hub's nodes to each other) a link is TLS with the hub's certificate verified against a CA, and
each side that connects logs in: NatsTls and NatsUser below (docs/FEDERATION.md, "Securing the
links"). A ward host talks to its own leaf node on its own PC (loopback) in clear, unless the
leaf node listens with `client_tls`: then every client, the ward host and its standby on the
other PC, connects over mutual TLS with a certificate from the ward CA (federation/leaflink.py).
"""
from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..devicekeys import write_private
from .subjects import HOSPITAL_ACCOUNT, HUB_DOMAIN, rpc_subject, ward_account, ward_deliver_prefix, ward_domain

NATS_SERVER = "nats-server"
READY_TIMEOUT_S = 15.0


def _q(text: str) -> str:
    return json.dumps(text)


@dataclass(frozen=True)
class NatsTls:
    """The hub's TLS: its certificate and key (from the hospital console's CA, `wardcall ca`),
    and that CA, which whoever connects verifies the hub against."""
    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_block(self) -> str:
        return f"tls {{ cert_file: {_q(str(self.cert_file))}, key_file: {_q(str(self.key_file))}, timeout: 5 }}"

    def route_block(self) -> str:
        # the hub's nodes connect to each other: mutual TLS, each verifying the other against
        # the CA (the certificate must allow client authentication too: wardcall's do)
        return (f"tls {{ cert_file: {_q(str(self.cert_file))}, key_file: {_q(str(self.key_file))}, "
                f"ca_file: {_q(str(self.ca_file))}, timeout: 5 }}")

    def client_block(self) -> str:
        return f"tls {{ ca_file: {_q(str(self.ca_file))}, timeout: 5 }}"

    def mutual_block(self) -> str:
        # a ward's leaf node to its clients (the ward host, its standby): each must show a
        # certificate from the same CA, and verifies the node's
        return (f"tls {{ cert_file: {_q(str(self.cert_file))}, key_file: {_q(str(self.key_file))}, "
                f"ca_file: {_q(str(self.ca_file))}, verify: true, timeout: 5 }}")


@dataclass(frozen=True)
class NatsUser:
    """A login on the hub: a ward's leaf node (user ward-<id>), the hospital console, a route.
    A ward's leaf login (`ward` set) lands in that ward's account on the hub (HubNode)."""
    user: str
    password: str
    ward: str | None = None

    @staticmethod
    def new(user: str) -> "NatsUser":
        return NatsUser(user, secrets.token_urlsafe(24))     # URL-safe: it goes into nats:// URLs

    @staticmethod
    def for_ward(ward_id: str, standby: bool = False) -> "NatsUser":
        """The login of a ward's leaf node (or of its standby host's) on the hub."""
        return NatsUser(ward_domain(ward_id, standby), secrets.token_urlsafe(24), ward_id)

    def entry(self) -> str:
        account = f", account: {_q(ward_account(self.ward))}" if self.ward is not None else ""
        return f"{{ user: {_q(self.user)}, password: {_q(self.password)}{account} }}"

    def url(self, scheme: str, host: str, port: int) -> str:
        return f"{scheme}://{self.user}:{self.password}@{host}:{port}"


def _users(users: Sequence[NatsUser]) -> str:
    return f"authorization {{ users: [{', '.join(u.entry() for u in users)}], timeout: 5 }}"


def _accounts(wards: Sequence[str], clients: Sequence[NatsUser]) -> str:
    """An account per ward, and the hospital's: a ward's leaf node (and whoever uses its login)
    sees only its own ward's subjects; the hospital's account, the console's, imports from
    each ward what the hospital needs: its JetStream API and deliveries (the hub's stream
    sources the ward's) and its rpc (a team's accept). The hub's JetStream serves only the
    hospital's account."""
    to = f"accounts: [{_q(HOSPITAL_ACCOUNT)}]"
    imports: list[str] = []
    blocks: list[str] = []
    for ward in wards:
        account = ward_account(ward)
        services = [f"$JS.{ward_domain(ward, s)}.API.>" for s in (False, True)] + [rpc_subject(ward, ">")]
        streams = [f"{ward_deliver_prefix(ward, s)}.>" for s in (False, True)]
        exports = [f"{{ service: {_q(s)}, {to} }}" for s in services] + [f"{{ stream: {_q(s)}, {to} }}" for s in streams]
        blocks.append(f"{_q(account)}: {{ exports: [{', '.join(exports)}] }}")
        imports += [f"{{ service: {{ account: {_q(account)}, subject: {_q(s)} }} }}" for s in services]
        imports += [f"{{ stream: {{ account: {_q(account)}, subject: {_q(s)} }} }}" for s in streams]
    hospital = (f"{_q(HOSPITAL_ACCOUNT)}: {{ jetstream: enabled, users: [{', '.join(u.entry() for u in clients)}], "
                f"imports: [{', '.join(imports)}] }}")
    return f"accounts {{ {hospital}, {', '.join(blocks)} }}"


@dataclass(frozen=True)
class HubNode:
    """One node of the hospital's hub cluster."""
    name: str
    store_dir: Path
    client_port: int
    leaf_port: int
    monitor_port: int
    host: str = "127.0.0.1"
    cluster_port: int = 0                      # 0: a hub of one node (no cluster block)
    routes: tuple[str, ...] = ()               # nats://host:cluster_port of the other nodes
    cluster_name: str = "hospital"
    tls: NatsTls | None = None                 # None: every link in clear (loopback tests, bench)
    clients: tuple[NatsUser, ...] = ()         # who may connect to the client port (the hospital console)
    leaves: tuple[NatsUser, ...] = ()          # the wards' leaf nodes
    route_user: NatsUser | None = None         # the hub's nodes, to each other

    def conf(self) -> str:
        lines = [f"server_name: {_q(self.name)}", f"listen: {_q(f'{self.host}:{self.client_port}')}",
                 f"http: {_q(f'{self.host}:{self.monitor_port}')}",
                 f"jetstream {{ store_dir: {_q(str(self.store_dir))}, domain: {_q(HUB_DOMAIN)} }}"]
        if self.tls is not None:
            lines.append(self.tls.server_block())
        wards = sorted({u.ward for u in self.leaves if u.ward is not None})
        if wards:
            lines.append(_accounts(wards, self.clients))       # the console's login is in the hospital's account
        elif self.clients:
            lines.append(_users(self.clients))
        leaf = [f"listen: {_q(f'{self.host}:{self.leaf_port}')}"]
        if self.tls is not None:
            leaf.append(self.tls.server_block())
        if self.leaves:
            leaf.append(_users(self.leaves))
        lines.append(f"leafnodes {{ {', '.join(leaf)} }}")
        if self.cluster_port:
            routes = ", ".join(_q(r) for r in self.routes)
            cluster = [f"name: {_q(self.cluster_name)}", f"listen: {_q(f'{self.host}:{self.cluster_port}')}",
                       f"routes: [{routes}]"]
            if self.tls is not None:
                cluster.append(self.tls.route_block())
            if self.route_user is not None:
                cluster.append(f"authorization {{ user: {_q(self.route_user.user)}, "
                               f"password: {_q(self.route_user.password)}, timeout: 5 }}")
            lines.append(f"cluster {{ {', '.join(cluster)} }}")
        return "\n".join(lines) + "\n"


def hub_cluster(store_root: Path, nodes: Sequence[tuple[str, int, int, int, int]], tls: NatsTls | None = None,
                clients: tuple[NatsUser, ...] = (), leaves: tuple[NatsUser, ...] = ()) -> list[HubNode]:
    """The nodes of the hospital's hub cluster, one (host, client, leaf, monitor, cluster port)
    each; a single node gets no cluster block. A JetStream cluster wants three nodes or more
    (its streams then keep going with one node down). With `tls`, the routes are mutual TLS and
    log in with a route user of their own."""
    route_user = NatsUser.new("route") if tls is not None and len(nodes) > 1 else None
    out = []
    for i, (host, client, leaf, monitor, cluster) in enumerate(nodes):
        routes: tuple[str, ...] = ()
        if len(nodes) > 1:
            routes = tuple(route_user.url("nats", h, c) if route_user else f"nats://{h}:{c}"
                           for j, (h, _, _, _, c) in enumerate(nodes) if j != i)
        out.append(HubNode(f"hub-{i + 1}", store_root / f"hub-{i + 1}", client, leaf, monitor, host,
                           cluster if len(nodes) > 1 else 0, routes, tls=tls, clients=clients, leaves=leaves,
                           route_user=route_user))
    return out


@dataclass(frozen=True)
class LeafNode:
    """A ward's own NATS server: JetStream domain ward-<id>, a leaf connection to the hub."""
    ward_id: str
    store_dir: Path
    client_port: int
    monitor_port: int
    hub_leaf_urls: tuple[str, ...]            # nats://host:leaf_port of the hub's nodes
    host: str = "127.0.0.1"
    reconnect_s: int = 1                      # how soon it tries the hub again
    standby: bool = False                     # the standby host's leaf node: domain ward-<id>-standby
    hub_tls: NatsTls | None = None            # verify the hub against its CA (the urls are then tls://)
    hub_user: NatsUser | None = None          # its login on the hub
    client_tls: NatsTls | None = None         # its clients: mutual TLS, certificates from the ward CA

    @property
    def domain(self) -> str:
        return ward_domain(self.ward_id, self.standby)

    def conf(self) -> str:
        urls = ", ".join(_q(self._remote_url(u)) for u in self.hub_leaf_urls)
        remote = f"urls: [{urls}]"
        if self.hub_tls is not None:
            remote += ", " + self.hub_tls.client_block()
        lines = [
            f"server_name: {_q('leaf-' + self.domain)}", f"listen: {_q(f'{self.host}:{self.client_port}')}",
            f"http: {_q(f'{self.host}:{self.monitor_port}')}",
            f"jetstream {{ store_dir: {_q(str(self.store_dir))}, domain: {_q(self.domain)} }}",
            f"leafnodes {{ remotes: [ {{ {remote} }} ], reconnect: {self.reconnect_s} }}",
        ]
        if self.client_tls is not None:
            lines.append(self.client_tls.mutual_block())
        return "\n".join(lines) + "\n"

    def _remote_url(self, url: str) -> str:
        # nats://host:port as given; tls:// with the hub's TLS, and the login in it
        scheme, _, rest = url.partition("://")
        if self.hub_tls is not None:
            scheme = "tls"
        if self.hub_user is not None:
            host, _, port = rest.rpartition(":")
            return self.hub_user.url(scheme, host, int(port))
        return f"{scheme}://{rest}"


def nats_server_path() -> str:
    path = shutil.which(NATS_SERVER) or (f"/usr/sbin/{NATS_SERVER}" if Path(f"/usr/sbin/{NATS_SERVER}").exists() else None)
    if path is None:
        raise FileNotFoundError("nats-server is not installed (Debian: apt-get install nats-server; `make nats-server`)")
    return path


@dataclass
class NatsServer:
    """One nats-server process from a HubNode or LeafNode: start() waits until /healthz says it
    (and its JetStream) is ready; stop() and kill() end it; start() again reuses its store."""
    node: HubNode | LeafNode
    conf_path: Path
    log_path: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        scheme = "tls" if isinstance(self.node, LeafNode) and self.node.client_tls is not None else "nats"
        return f"{scheme}://{self.node.host}:{self.node.client_port}"

    def start(self, timeout: float = READY_TIMEOUT_S) -> "NatsServer":
        return self.launch().wait_ready(timeout)

    def launch(self) -> "NatsServer":
        """Start it without waiting (a cluster's nodes are ready only once enough of them run)."""
        self.conf_path.parent.mkdir(parents=True, exist_ok=True)
        write_private(self.conf_path, self.node.conf())       # it holds the hub's logins
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen([nats_server_path(), "-c", str(self.conf_path)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> "NatsServer":
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        url = f"http://{self.node.host}:{self.node.monitor_port}/healthz"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.proc.returncode}: see {self.log_path}")
            try:
                with urllib.request.urlopen(url, timeout=1) as reply:
                    if json.loads(reply.read()).get("status") == "ok":
                        return self
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"nats-server not ready within {timeout:g} s: see {self.log_path}")
            time.sleep(0.05)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill(self) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(5)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on the host now (the demo's and bench's servers)."""
    import socket
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
