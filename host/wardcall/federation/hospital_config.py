"""hospital.toml: the hospital console's configuration (docs/FEDERATION.md): the hub's
addresses, the wards, the console users, and the cross-ward teams. Every problem is a
ConfigError naming the file, the place and what is wrong, like the ward's configuration."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import NAME_RE, USER_RE, ConfigError, TlsSettings, parse_tls_table
from ..protocol import KIND_BY_NAME
from .subjects import WARD_ID_RE

HOSPITAL_ROLES = ("supervisor", "team")      # supervisor: every ward's board; team: a team's pocket console
DEFAULT_API_PORT = 7480
DEFAULT_TEAM_KINDS = ("code_blue", "staff_assist")


@dataclass(frozen=True)
class HospitalUser:
    login: str
    name: str
    password_hash: str
    role: str


@dataclass(frozen=True)
class Team:
    id: str
    name: str
    kinds: frozenset[int]             # call kinds it is alerted for, from every ward
    members: tuple[str, ...]


@dataclass
class HospitalConfig:
    path: Path
    name: str
    hub_urls: tuple[str, ...]
    api_host: str = "127.0.0.1"
    api_port: int = DEFAULT_API_PORT
    wards: dict[str, str] = field(default_factory=dict)          # ward id -> its name
    standby: set[str] = field(default_factory=set)               # wards with a standby host
    replicas: int = 1                                            # copies of the hospital stream on the hub
    users: dict[str, HospitalUser] = field(default_factory=dict)
    teams: dict[str, Team] = field(default_factory=dict)
    tls: TlsSettings | None = None                               # [tls]: the console's HTTPS
    hub_ca: Path | None = None                                   # verify the hub (tls:// hub_urls) against this CA
    hub_user: str = ""                                           # the console's login on the hub
    hub_password: str = ""                                       # from hub_password_file (0600)

    def teams_of(self, login: str) -> list[Team]:
        return [t for t in self.teams.values() if login in t.members]


def _table(path: Path, place: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(path, place, f"must be a table, not {type(value).__name__}")
    return value


def _only(path: Path, place: str, table: dict[str, Any], known: tuple[str, ...]) -> None:
    extra = sorted(set(table) - set(known))
    if extra:
        raise ConfigError(path, place, f"unknown key {extra[0]!r} (known here: {', '.join(known)})")


def _string(path: Path, place: str, table: dict[str, Any], key: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(path, f"{place} {key}", "is missing" if value is None else f"must be a string, not {value!r}")
    return value


def _hub_login(path: Path, top: dict[str, Any], config: HospitalConfig) -> None:
    """[hospital] hub_ca, hub_user, hub_password_file: TLS and the login on the hub's client
    port (docs/FEDERATION.md, "Securing the links")."""
    tls_urls = [u for u in config.hub_urls if u.startswith("tls://")]
    if "hub_ca" in top:
        config.hub_ca = path.parent / _string(path, "[hospital]", top, "hub_ca")
        if not config.hub_ca.is_file():
            raise ConfigError(path, "[hospital] hub_ca", f"{config.hub_ca} is not a file (the CA the hub's certificate is from)")
        if len(tls_urls) != len(config.hub_urls):
            raise ConfigError(path, "[hospital] hub_urls", "with hub_ca every hub address is tls://, never nats:// (in clear)")
    elif tls_urls:
        raise ConfigError(path, "[hospital] hub_ca", "is missing: tls:// hub addresses are verified against the CA named here")
    if ("hub_user" in top) != ("hub_password_file" in top):
        raise ConfigError(path, "[hospital] hub_user", "hub_user and hub_password_file go together (the console's login on the hub)")
    if "hub_user" in top:
        config.hub_user = _string(path, "[hospital]", top, "hub_user")
        secret = path.parent / _string(path, "[hospital]", top, "hub_password_file")
        try:
            mode = secret.stat().st_mode & 0o077
            config.hub_password = secret.read_text("utf-8").strip()
        except OSError as exc:
            raise ConfigError(path, "[hospital] hub_password_file", f"cannot read {secret}: {exc.strerror or exc}") from None
        if mode:
            raise ConfigError(path, "[hospital] hub_password_file", f"{secret} may be read by others: chmod 600 {secret}")
        if not config.hub_password:
            raise ConfigError(path, "[hospital] hub_password_file", f"{secret} is empty")


def load_hospital(path: str | Path) -> HospitalConfig:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read the file: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(path, "", f"not valid TOML: {exc}") from None
    _only(path, "", data, ("hospital", "wards", "users", "teams", "tls"))
    top = _table(path, "[hospital]", data.get("hospital"))
    _only(path, "[hospital]", top, ("name", "hub_urls", "api_host", "api_port", "replicas", "hub_ca", "hub_user",
                                    "hub_password_file"))
    replicas = top.get("replicas", 1)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= 5:
        raise ConfigError(path, "[hospital] replicas", f"must be 1-5 (3 on a hub cluster of three nodes), not {replicas!r}")
    urls = top.get("hub_urls", ["nats://127.0.0.1:4222"])
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and u.startswith(("nats://", "tls://")) for u in urls):
        raise ConfigError(path, "[hospital] hub_urls", f"must be a list of nats:// addresses (the hub's nodes), not {urls!r}")
    port = top.get("api_port", DEFAULT_API_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(path, "[hospital] api_port", f"must be a port 0-65535, not {port!r}")
    config = HospitalConfig(path, _string(path, "[hospital]", top, "name"), tuple(urls),
                            _string(path, "[hospital]", top, "api_host", "127.0.0.1"), port)
    config.replicas = replicas
    _hub_login(path, top, config)
    tls = data.get("tls", {})
    if isinstance(tls, dict) and "terminals" in tls:
        raise ConfigError(path, "[tls] terminals", "no terminal connects to the hospital console (say it in each ward's TOML)")
    # the console's HTTPS, from a CA of its own made at the first start (as a ward's)
    config.tls = parse_tls_table(path, "[tls]", tls, path.parent, path.stem)

    for ward_id, ward in _table(path, "[wards]", data.get("wards", {})).items():
        place = f"[wards.{ward_id}]"
        if not WARD_ID_RE.match(ward_id):
            raise ConfigError(path, place, "a ward's id is lower-case letters, digits, '_' and '-' (its [federation] ward)")
        ward = _table(path, place, ward)
        _only(path, place, ward, ("name", "standby"))
        config.wards[ward_id] = _string(path, place, ward, "name", ward_id)
        if not isinstance(ward.get("standby", False), bool):
            raise ConfigError(path, f"{place} standby", "must be true or false (the ward has a standby host)")
        if ward.get("standby", False):
            config.standby.add(ward_id)
    if not config.wards:
        raise ConfigError(path, "[wards]", "names no ward: add [wards.<id>] for each ward's [federation] ward")

    for login, user in _table(path, "[users]", data.get("users", {})).items():
        place = f"[users.{login}]"
        if not USER_RE.match(login):
            raise ConfigError(path, place, "a user name may use letters, digits, '.', '_', '@' and '-' only")
        user = _table(path, place, user)
        _only(path, place, user, ("name", "password", "role"))
        hashed = _string(path, place, user, "password")
        if not hashed.startswith("scrypt$"):
            raise ConfigError(path, f"{place} password", "must be a hash made by `wardcall passwd`, never the password itself")
        role = user.get("role", "supervisor")
        if role not in HOSPITAL_ROLES:
            raise ConfigError(path, f"{place} role", f"unknown role {role!r} (roles: {', '.join(HOSPITAL_ROLES)})")
        config.users[login] = HospitalUser(login, _string(path, place, user, "name", login), hashed, role)

    for team_id, team in _table(path, "[teams]", data.get("teams", {})).items():
        place = f"[teams.{team_id}]"
        if not NAME_RE.match(team_id):
            raise ConfigError(path, place, "a team's id may use letters, digits, space, '.', '_' and '-' only")
        team = _table(path, place, team)
        _only(path, place, team, ("name", "kinds", "members"))
        kinds = team.get("kinds", list(DEFAULT_TEAM_KINDS))
        if not isinstance(kinds, list) or not kinds or any(k not in KIND_BY_NAME for k in kinds):
            raise ConfigError(path, f"{place} kinds", f"must be a list of call kinds ({', '.join(KIND_BY_NAME)}), not {kinds!r}")
        members = team.get("members", [])
        if not isinstance(members, list) or not members:
            raise ConfigError(path, f"{place} members", "must list the team's users (logins under [users])")
        for member in members:
            if member not in config.users:
                raise ConfigError(path, f"{place} members", f"{member!r} is not a user under [users]")
        config.teams[team_id] = Team(team_id, _string(path, place, team, "name", team_id),
                                     frozenset(KIND_BY_NAME[k] for k in kinds), tuple(members))
    return config
