"""The ward configuration: one TOML file (ward, rooms, beds, terminals, timers, console users).

Every problem is reported as ConfigError naming the file, the place in it and what is wrong,
so a nurse-call host never starts on a half-understood configuration.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .integrations.config import IntegrationConfigError, IntegrationsConfig, parse_integrations
from .federation.settings import FederationSettings, SettingError, parse_federation
from .protocol import KIND_BY_NAME, wardproto

DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")

# Defaults: a patient call unanswered for a minute is escalated; emergencies much sooner.
DEFAULT_ACK_TIMEOUT_S = {"code_blue": 10.0, "staff_assist": 15.0, "bathroom": 30.0, "patient": 60.0, "technical": 120.0}
DEFAULT_ATTEND_TIMEOUT_S = 180.0
DEFAULT_BROADCAST = ("code_blue", "staff_assist")
DEFAULT_SHIFTS = {"early": "06:00", "late": "14:00", "night": "22:00"}
# Routing (docs/HOST.md, "Routing"): how long a step waits for an Accept, and the steps per call kind.
# Emergencies wait for nobody: every step's people at once.
DEFAULT_WAIT_S = {"code_blue": 0.0, "staff_assist": 0.0, "bathroom": 30.0, "patient": 60.0, "technical": 120.0}
DEFAULT_CHAIN = {"code_blue": ("all",), "staff_assist": ("all",), "bathroom": ("primary", "secondary", "charge", "all"),
                 "patient": ("primary", "secondary", "charge", "all"), "technical": ("charge", "all")}
DEFAULT_PHONE_SILENT_S = 45.0
ROUTE_STEPS = ("primary", "secondary", "charge", "all")
BADGE_RE = re.compile(r"^(?:[0-9a-f]{8}|[0-9a-f]{14}|[0-9a-f]{20})$")     # a card UID of 4, 7 or 10 bytes


class ConfigError(Exception):
    """A configuration problem: file, place and what is wrong."""

    def __init__(self, path: Path | str, place: str, problem: str) -> None:
        self.path = str(path)
        self.place = place
        self.problem = problem
        where = f"{self.path}: {place}: " if place else f"{self.path}: "
        super().__init__(where + problem)


@dataclass(frozen=True)
class Room:
    id: str
    name: str
    beds: tuple[str, ...]


@dataclass(frozen=True)
class TerminalConfig:
    device: str
    room: str
    bed: str


# Console roles and what each may do (docs/CONSOLE.md, "Roles"). Everyone logged in sees the board.
ROLES = ("nurse", "aide", "charge_nurse", "technician", "admin")
CARE_ROLES = frozenset({"nurse", "aide", "charge_nurse"})     # who can be assigned to beds and routed calls
PERMISSIONS: dict[str, frozenset[str]] = {
    "nurse": frozenset({"acknowledge", "silence"}),
    "aide": frozenset({"acknowledge", "silence"}),
    "charge_nurse": frozenset({"acknowledge", "silence", "assign", "identify", "lamp_test"}),
    "technician": frozenset({"identify", "lamp_test", "reboot", "update", "provision"}),
    "admin": frozenset({"acknowledge", "silence", "assign", "identify", "lamp_test", "reboot", "update",
                        "provision", "users"}),
}


@dataclass(frozen=True)
class User:
    login: str
    name: str
    password_hash: str
    role: str = "nurse"
    badge: str | None = None        # the RFID card's UID, lower-case hex

    def may(self, action: str) -> bool:
        return action in PERMISSIONS[self.role]

    @property
    def care(self) -> bool:
        """Can be assigned to beds and have calls routed to them."""
        return self.role in CARE_ROLES


@dataclass(frozen=True)
class Network:
    terminal_host: str = "0.0.0.0"
    terminal_port: int = 7300
    discovery_host: str = "0.0.0.0"
    discovery_port: int = 7301
    announce_host: str = ""       # "" = the local address the DISCOVER arrived on
    api_host: str = "127.0.0.1"
    api_port: int = 7380
    # limits (docs/HOST.md, "Limits"); 0 = derived from the process's descriptor limit
    pending_connections_max: int = 0           # terminal connections before their first authentic frame
    pending_connections_per_address: int = 0   # 0 = the same as the total
    http_connections_max: int = 0
    http_connections_per_address: int = 128
    http_header_timeout_s: float = 10.0        # a request head must arrive within this
    http_body_timeout_s: float = 30.0          # and a small body (≤ 1 MiB) within this
    announce_burst: int = 200                  # ANNOUNCE replies per source address: a token bucket
    announce_per_s: float = 20.0


@dataclass(frozen=True)
class Timing:
    heartbeat_ms: int = 1000
    # the host's heartbeat to a terminal whose firmware follows it (CAP_HOST_BEAT): every this many
    # heartbeat_ms. Its 5,000 sends a second were a fifth of a core over TLS (docs/BENCHMARKS.md).
    host_heartbeat_every: int = 3
    no_console_grace_s: float = 10.0        # alerts standing this long with no console → alarm
    attempt_alarm_s: float = 600.0          # "device trying to connect" stays this long after the last try
    handshake_timeout_s: float = 5.0


@dataclass(frozen=True)
class Console:
    idle_timeout_s: float = 1800.0           # a session with no request and no open event stream ends
    session_hours: float = 12.0              # and every session ends after this long
    login_alarm_failures: int = 10           # failed logins of one user within 15 min → console alarm


@dataclass(frozen=True)
class Escalation:
    ack_timeout_s: dict[int, float]          # by call kind number
    attend_timeout_s: float = DEFAULT_ATTEND_TIMEOUT_S
    broadcast_kinds: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Routing:
    """[routing]: who a call goes to and when it passes on (by call kind number)."""
    wait_s: dict[int, float]                 # a step waits this long for an Accept (0: no waiting)
    chain: dict[int, tuple[str, ...]]        # the steps (ROUTE_STEPS), ending with "all"
    phone_silent_s: float = DEFAULT_PHONE_SILENT_S   # a pocket console not heard from this long is skipped

    @classmethod
    def defaults(cls) -> "Routing":
        return cls({KIND_BY_NAME[k]: v for k, v in DEFAULT_WAIT_S.items()},
                   {KIND_BY_NAME[k]: v for k, v in DEFAULT_CHAIN.items()})


@dataclass(frozen=True)
class OtaKeys:
    """[ota]: the ward's update signing key pair (`wardcall update keygen`). The server and deploy
    need only the public key; the private key is used by `wardcall update` on the technician's side."""
    public_key: Path
    private_key: Path


TLS_MODES = ("tls", "plain")
CONSOLE_MODES = ("https", "http")
DEFAULT_TLS_NAME = "wardcall.internal"     # a ward-private name (.internal is reserved for private use)


@dataclass(frozen=True)
class TlsSettings:
    """[tls]: the ward CA (`wardcall ca init`), the host's certificate from it, the name the
    terminals verify, and whether terminals and console use TLS (docs/HOST.md, "TLS")."""
    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path
    name: str = DEFAULT_TLS_NAME
    alt_names: tuple[str, ...] = ()        # more names or addresses for the console's certificate
    terminals: str = "tls"                 # "plain": a bench setting, alarmed while it stands
    console: str = "https"                 # "http": a bench setting, alarmed while it stands
    cert_days: int = 397                   # a new host certificate's lifetime
    renew_days: int = 30                   # renewed at start (and alarmed) this long before it ends


@dataclass
class WardConfig:
    path: Path
    ward: str
    database: Path
    secrets: Path
    network: Network
    timing: Timing
    escalation: Escalation
    shifts: list[tuple[str, int]]            # (name, start minute of the day), sorted
    ota: OtaKeys
    tls: TlsSettings
    console: Console = field(default_factory=Console)
    rooms: dict[str, Room] = field(default_factory=dict)
    terminals: dict[str, TerminalConfig] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    routing: Routing = field(default_factory=Routing.defaults)
    integrations: IntegrationsConfig = field(default_factory=IntegrationsConfig)   # docs/INTEGRATION.md
    federation: FederationSettings | None = None     # [federation]: none, no broker (docs/FEDERATION.md)

    @property
    def heartbeat_s(self) -> float:
        return self.timing.heartbeat_ms / 1000.0

    @property
    def offline_after_s(self) -> float:
        """Silence after which a terminal counts as offline: three heartbeat intervals."""
        return 3 * self.heartbeat_s

    def shift_of(self, minute_of_day: int) -> str:
        current = self.shifts[-1][0]   # before the first start, the last shift of the day runs on
        for name, start in self.shifts:
            if minute_of_day >= start:
                current = name
        return current


class _Reader:
    """Typed access to one TOML table, with errors that say where."""

    def __init__(self, path: Path, place: str, table: Any) -> None:
        self.path = path
        self.place = place
        if not isinstance(table, dict):
            raise ConfigError(path, place, f"must be a table, not {type(table).__name__}")
        self.table = table
        self.used: set[str] = set()

    def error(self, key: str | None, problem: str) -> ConfigError:
        return ConfigError(self.path, f"{self.place} {key}" if key else self.place, problem)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        self.used.add(key)
        if key not in self.table:
            if required:
                raise self.error(key, "is missing")
            return default
        value = self.table[key]
        if kind in (int, float) or kind == (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
                raise self.error(key, f"must be a number{' (whole)' if kind is int else ''}, not {value!r}")
        elif not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.error(key, f"must be {names.replace('str', 'a string').replace('list', 'a list').replace('dict', 'a table')}, not {value!r}")
        return value

    def port(self, key: str, default: int) -> int:
        value = self.get(key, int, default)
        if not 0 <= value <= 65535:
            raise self.error(key, f"port {value} is outside 0-65535")
        return value

    def count(self, key: str, default: int) -> int:
        value = self.get(key, int, default)
        if value < 0:
            raise self.error(key, f"must be 0 or more, not {value}")
        return value

    def non_negative(self, key: str, default: float) -> float:
        value = float(self.get(key, (int, float), default))
        if value < 0:
            raise self.error(key, f"must be 0 or more, not {value:g}")
        return value

    def positive(self, key: str, default: float) -> float:
        value = float(self.get(key, (int, float), default))
        if value <= 0:
            raise self.error(key, f"must be more than 0, not {value:g}")
        return value

    def sub(self, key: str, required: bool = False) -> "_Reader":
        self.used.add(key)
        if key not in self.table:
            if required:
                raise self.error(None, f"needs a [{self._join(key)}] table")
            return _Reader(self.path, f"[{self._join(key)}]", {})
        return _Reader(self.path, f"[{self._join(key)}]", self.table[key])

    def _join(self, key: str) -> str:
        base = self.place.strip("[]")
        quoted = key if re.match(r"^[A-Za-z0-9_-]+$", key) else f'"{key}"'
        return f"{base}.{quoted}" if base else quoted

    def finish(self) -> None:
        extra = sorted(set(self.table) - self.used)
        if extra:
            raise self.error(None, f"unknown key {extra[0]!r} (known here: {', '.join(sorted(self.used)) or 'none'})")


def _clock_minutes(path: Path, place: str, text: Any) -> int:
    match = re.match(r"^(\d{1,2}):(\d{2})$", text) if isinstance(text, str) else None
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise ConfigError(path, place, f"must be a time of day like \"06:00\", not {text!r}")
    return int(match[1]) * 60 + int(match[2])


def load_config(path: str | Path) -> WardConfig:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read the file: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(path, f"byte {exc.start}", "the file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line L, column C)": that is the place
        text = str(exc)
        match = re.search(r"\(at (line \d+, column \d+|end of document)\)$", text)
        place = match[1] if match else ""
        problem = text[: match.start()].strip() if match else text
        raise ConfigError(path, place, f"not valid TOML: {problem}") from None
    return parse_config(path, data)


def parse_config(path: Path, data: dict[str, Any]) -> WardConfig:
    base = path.parent
    top = _Reader(path, "", data)

    ward = top.sub("ward", required=True)
    ward_name = ward.get("name", str, required=True)
    database = base / ward.get("database", str, "ward.db")
    secrets = base / ward.get("secrets", str, path.stem + ".secrets.json")
    ward.finish()

    net = top.sub("network")
    network = Network(
        terminal_host=net.get("terminal_host", str, Network.terminal_host),
        terminal_port=net.port("terminal_port", Network.terminal_port),
        discovery_host=net.get("discovery_host", str, Network.discovery_host),
        discovery_port=net.port("discovery_port", Network.discovery_port),
        announce_host=net.get("announce_host", str, Network.announce_host),
        api_host=net.get("api_host", str, Network.api_host),
        api_port=net.port("api_port", Network.api_port),
        pending_connections_max=net.count("pending_connections_max", Network.pending_connections_max),
        pending_connections_per_address=net.count("pending_connections_per_address", Network.pending_connections_per_address),
        http_connections_max=net.count("http_connections_max", Network.http_connections_max),
        http_connections_per_address=net.count("http_connections_per_address", Network.http_connections_per_address),
        http_header_timeout_s=net.positive("http_header_timeout_s", Network.http_header_timeout_s),
        http_body_timeout_s=net.positive("http_body_timeout_s", Network.http_body_timeout_s),
        announce_burst=net.count("announce_burst", Network.announce_burst),
        announce_per_s=net.positive("announce_per_s", Network.announce_per_s),
    )
    net.finish()

    tim = top.sub("timing")
    heartbeat_ms = tim.get("heartbeat_ms", int, Timing.heartbeat_ms)
    if not 50 <= heartbeat_ms <= 60000:
        raise tim.error("heartbeat_ms", f"must be between 50 and 60000, not {heartbeat_ms}")
    host_every = tim.get("host_heartbeat_every", int, Timing.host_heartbeat_every)
    if not 1 <= host_every <= wardproto.WF_HOST_BEATS:
        raise tim.error("host_heartbeat_every", f"must be between 1 and {wardproto.WF_HOST_BEATS}, not {host_every}")
    timing = Timing(
        heartbeat_ms=heartbeat_ms,
        host_heartbeat_every=host_every,
        no_console_grace_s=tim.positive("no_console_grace_s", Timing.no_console_grace_s),
        attempt_alarm_s=tim.positive("attempt_alarm_s", Timing.attempt_alarm_s),
        handshake_timeout_s=tim.positive("handshake_timeout_s", Timing.handshake_timeout_s),
    )
    tim.finish()

    con = top.sub("console")
    console = Console(
        idle_timeout_s=con.positive("idle_timeout_min", Console.idle_timeout_s / 60) * 60,
        session_hours=con.positive("session_hours", Console.session_hours),
        login_alarm_failures=int(con.positive("login_alarm_failures", Console.login_alarm_failures)),
    )
    con.finish()

    esc = top.sub("escalation")
    ack = esc.sub("ack_timeout_s")
    ack_timeout = {}
    for name, default in DEFAULT_ACK_TIMEOUT_S.items():
        ack_timeout[KIND_BY_NAME[name]] = ack.positive(name, default)
    ack.finish()
    broadcast_names = esc.get("broadcast_kinds", list, list(DEFAULT_BROADCAST))
    for name in broadcast_names:
        if name not in KIND_BY_NAME:
            raise esc.error("broadcast_kinds", f"unknown call kind {name!r} (kinds: {', '.join(KIND_BY_NAME)})")
    escalation = Escalation(
        ack_timeout_s=ack_timeout,
        attend_timeout_s=esc.positive("attend_timeout_s", DEFAULT_ATTEND_TIMEOUT_S),
        broadcast_kinds=frozenset(KIND_BY_NAME[n] for n in broadcast_names),
    )
    esc.finish()

    ota_r = top.sub("ota")
    ota = OtaKeys(public_key=base / ota_r.get("public_key", str, f"{path.stem}.ota-public.pem"),
                  private_key=base / ota_r.get("private_key", str, f"{path.stem}.ota-private.pem"))
    ota_r.finish()

    tls = _tls_settings(top.sub("tls"), base, path.stem)

    sh = top.sub("shifts")
    shift_table = sh.table or DEFAULT_SHIFTS
    shifts = sorted(((name, _clock_minutes(path, f"[shifts] {name}", text)) for name, text in shift_table.items()), key=lambda s: s[1])
    sh.used.update(sh.table)
    if len({start for _, start in shifts}) != len(shifts):
        raise sh.error(None, "two shifts start at the same time")

    rooms_r = top.sub("rooms")
    rooms: dict[str, Room] = {}
    for room_id in rooms_r.table:
        if not NAME_RE.match(room_id):
            raise rooms_r.error(None, f"room id {room_id!r} may use letters, digits, space, '.', '_' and '-' only")
        r = rooms_r.sub(room_id)
        beds = r.get("beds", list, [])
        if not all(isinstance(b, str) and NAME_RE.match(b) for b in beds):
            raise r.error("beds", f"must be a list of bed names (strings), not {beds!r}")
        rooms[room_id] = Room(room_id, r.get("name", str, f"Room {room_id}"), tuple(beds))
        r.finish()

    term_r = top.sub("terminals")
    terminals: dict[str, TerminalConfig] = {}
    on_bed: dict[tuple[str, str], str] = {}          # (room, bed) -> the device there
    for device in term_r.table:
        if not DEVICE_ID_RE.match(device):
            raise term_r.error(None, f"device id {device!r} may use letters, digits, '.', '_' and '-' only (at most 64)")
        t = term_r.sub(device)
        room = t.get("room", str, required=True)
        bed = t.get("bed", str, "")
        if room not in rooms:
            raise t.error("room", f"room {room!r} is not defined under [rooms] (defined: {', '.join(rooms) or 'none'})")
        if bed and rooms[room].beds and bed not in rooms[room].beds:
            raise t.error("bed", f"bed {bed!r} is not one of room {room}'s beds ({', '.join(rooms[room].beds)})")
        # two terminals on one bed: the console could not tell whose call it shows. Terminals
        # of the room itself (no bed: a bathroom cord, a door) may be several.
        if bed and (room, bed) in on_bed:
            raise t.error("bed", f"room {room} bed {bed} already has terminal {on_bed[(room, bed)]}: "
                                 f"{on_bed[(room, bed)]} and {device} cannot both be that bed")
        if bed:
            on_bed[(room, bed)] = device
        terminals[device] = TerminalConfig(device, room, bed)
        t.finish()

    users_r = top.sub("users")
    users: dict[str, User] = {}
    for login in users_r.table:
        if not USER_RE.match(login):
            raise users_r.error(None, f"user name {login!r} may use letters, digits, '.', '_', '@' and '-' only")
        u = users_r.sub(login)
        hashed = u.get("password", str, required=True)
        if not hashed.startswith("scrypt$"):
            raise u.error("password", "must be a hash made by `wardcall passwd` (starts with \"scrypt$\"), never the password itself")
        role = u.get("role", str, "nurse")
        if role not in ROLES:
            raise u.error("role", f"unknown role {role!r} (roles: {', '.join(ROLES)})")
        badge = u.get("badge", str, None)
        if badge is not None:
            badge = badge.strip().lower()
            if not BADGE_RE.match(badge):
                raise u.error("badge", f"must be the card's UID in hex, 4, 7 or 10 bytes (like \"04a1b2c3\"), not {u.table['badge']!r}")
            other = next((o.login for o in users.values() if o.badge == badge), None)
            if other is not None:
                raise u.error("badge", f"badge {badge} is already user {other}'s: a badge names one person")
        users[login] = User(login, u.get("name", str, login), hashed, role, badge)
        u.finish()

    routing = _routing(top.sub("routing"))

    top.used.add("integrations")        # parsed by integrations/config.py
    try:
        integrations = parse_integrations(data.get("integrations", {}), set(rooms), set(users), database)
    except IntegrationConfigError as exc:
        raise ConfigError(path, exc.place, exc.problem) from None

    top.used.add("federation")
    try:
        federation = parse_federation(data["federation"]) if "federation" in data else None
    except SettingError as exc:
        raise ConfigError(path, f"[federation] {exc.key}".strip(), exc.problem) from None

    top.finish()
    return WardConfig(path=path, ward=ward_name, database=database, secrets=secrets, network=network,
                      timing=timing, escalation=escalation, shifts=shifts, ota=ota, tls=tls, console=console, rooms=rooms,
                      terminals=terminals, users=users, routing=routing, integrations=integrations,
                      federation=federation)


def _routing(rt: _Reader) -> Routing:
    phone_silent_s = rt.positive("phone_silent_s", DEFAULT_PHONE_SILENT_S)
    wait_r = rt.sub("wait_s")
    wait_s = {KIND_BY_NAME[name]: wait_r.non_negative(name, default) for name, default in DEFAULT_WAIT_S.items()}
    wait_r.finish()
    chain_r = rt.sub("chain")
    chain: dict[int, tuple[str, ...]] = {}
    for name, default in DEFAULT_CHAIN.items():
        steps = chain_r.get(name, list, list(default))
        unknown = [s for s in steps if s not in ROUTE_STEPS]
        if unknown or not steps:
            what = f"unknown step {unknown[0]!r}" if unknown else "no steps"
            raise chain_r.error(name, f"{what} (steps: {', '.join(ROUTE_STEPS)})")
        if len(set(steps)) != len(steps):
            raise chain_r.error(name, f"a step may come only once, not {steps!r}")
        if steps[-1] != "all":
            # the last resort: a call not accepted on the way must reach everyone on shift
            raise chain_r.error(name, f"must end with \"all\" (a call nobody accepts goes to everyone on shift), not {steps!r}")
        chain[KIND_BY_NAME[name]] = tuple(steps)
    chain_r.finish()
    rt.finish()
    return Routing(wait_s, chain, phone_silent_s)


def parse_tls_table(path: Path, place: str, table: Any, base: Path, stem: str) -> TlsSettings:
    """A [tls] table as a ward's is read (the hospital console's too: docs/FEDERATION.md); its
    files default to <stem>.ca.pem and so on beside the configuration."""
    return _tls_settings(_Reader(path, place, table), base, stem)


def _tls_settings(r: "_Reader", base: Path, stem: str) -> TlsSettings:
    name = r.get("name", str, DEFAULT_TLS_NAME)
    if not re.match(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$", name):
        raise r.error("name", f"must be a DNS name such as {DEFAULT_TLS_NAME!r} (the name the terminals verify), not {name!r}")
    alt = r.get("alt_names", list, [])
    if not all(isinstance(a, str) and a and len(a) <= 253 for a in alt):
        raise r.error("alt_names", f"must be a list of host names or IP addresses, not {alt!r}")
    terminals = r.get("terminals", str, "tls")
    if terminals not in TLS_MODES:
        raise r.error("terminals", f"must be \"tls\" or \"plain\" (no encryption: bench work only), not {terminals!r}")
    console = r.get("console", str, "https")
    if console not in CONSOLE_MODES:
        raise r.error("console", f"must be \"https\" or \"http\" (no encryption: bench work only), not {console!r}")
    cert_days = r.get("cert_days", int, TlsSettings.cert_days)
    if not 2 <= cert_days <= 3650:
        raise r.error("cert_days", f"must be between 2 and 3650, not {cert_days}")
    renew_days = r.get("renew_days", int, TlsSettings.renew_days)
    if not 1 <= renew_days < cert_days:
        raise r.error("renew_days", f"must be at least 1 and less than cert_days ({cert_days}), not {renew_days}")
    settings = TlsSettings(
        ca_cert=base / r.get("ca_cert", str, f"{stem}.ca.pem"), ca_key=base / r.get("ca_key", str, f"{stem}.ca-key.pem"),
        cert=base / r.get("cert", str, f"{stem}.host.pem"), key=base / r.get("key", str, f"{stem}.host-key.pem"),
        name=name, alt_names=tuple(alt), terminals=terminals, console=console, cert_days=cert_days,
        renew_days=renew_days)
    r.finish()
    return settings


def toml_key(key: str) -> str:
    """A key as TOML needs it written: bare if it can be, quoted otherwise."""
    return key if re.match(r"^[A-Za-z0-9_-]+$", key) else '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
