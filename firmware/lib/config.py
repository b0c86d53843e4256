# config.json: one per device, written by `wardcall provision` and changed by CMD_CONFIG.
# load() never raises: a missing or invalid file gives (None, reason) so that the application
# can show the "not configured" pattern instead of crash-looping.
from flash import read_json, write_json

PATH = "config.json"

DEFAULTS = {"host": None, "port": 7300, "discovery_port": 7301, "debug": False,
            "standby_host": None, "standby_port": None}
# keys CMD_CONFIG may change (never the identity: device_id, key)
CHANGEABLE = ("ward", "room", "bed", "wifi", "host", "port", "discovery_port", "debug",
              "standby_host", "standby_port")


def _is_hex(s):
    for c in s:
        if c not in "0123456789abcdefABCDEF":
            return False
    return True


def _text(cfg, name, limit):
    v = cfg.get(name)
    if not isinstance(v, str) or not v or len(v.encode()) > limit:
        return "%s must be a non-empty text of at most %d bytes" % (name, limit)
    return None


def _port(cfg, name):
    v = cfg.get(name)
    if not isinstance(v, int) or isinstance(v, bool) or v < 1 or v > 65535:
        return "%s must be a port number (1-65535)" % name
    return None


def validate(cfg):
    """None if cfg is a usable configuration, else the first problem as a sentence."""
    if not isinstance(cfg, dict):
        return "config.json must hold a JSON object"
    for name, limit in (("device_id", 64), ("ward", 64), ("room", 64), ("bed", 64)):
        err = _text(cfg, name, limit)
        if err:
            return err
    key = cfg.get("key")
    if not isinstance(key, str) or len(key) != 64 or not _is_hex(key):
        return "key must be 64 hexadecimal digits"
    wifi = cfg.get("wifi")
    if not isinstance(wifi, dict) or not isinstance(wifi.get("ssid"), str) or not wifi.get("ssid") \
            or not isinstance(wifi.get("password", ""), str):
        return "wifi must be an object with ssid and password texts"
    host = cfg.get("host")
    if host is not None and (not isinstance(host, str) or not host):
        return "host must be a host name or address, or null for discovery"
    for name in ("port", "discovery_port"):
        err = _port(cfg, name)
        if err:
            return err
    standby = cfg.get("standby_host")
    if standby is not None:
        if not isinstance(standby, str) or not standby:
            return "standby_host must be a host name or address, or null for none"
        if host is None:
            return "standby_host needs host: with discovery the terminal finds whichever host answers"
    if cfg.get("standby_port") is not None:
        err = _port(cfg, "standby_port")
        if err:
            return err
    if not isinstance(cfg.get("debug"), bool):
        return "debug must be true or false"
    return None


def _with_defaults(raw):
    cfg = {}
    for k in DEFAULTS:
        cfg[k] = DEFAULTS[k]
    for k in raw:
        cfg[k] = raw[k]
    return cfg


def load(path=PATH):
    """(config, None) or (None, why it is unusable)."""
    raw = read_json(path, None)
    if raw is None:
        return None, "%s is missing or not valid JSON" % path
    if not isinstance(raw, dict):
        return None, "%s must hold a JSON object" % path
    cfg = _with_defaults(raw)
    err = validate(cfg)
    if err:
        return None, "%s: %s" % (path, err)
    return cfg, None


def update(changes, path=PATH):
    """Apply CMD_CONFIG changes: (new config, None) after an atomic write, or (None, why not)."""
    if not isinstance(changes, dict) or not changes:
        return None, "config change must be a non-empty JSON object"
    for k in changes:
        if k not in CHANGEABLE:
            return None, "config key %s cannot be changed remotely" % k
    raw = read_json(path, None)
    if not isinstance(raw, dict):
        return None, "current config unreadable"
    for k in changes:
        raw[k] = changes[k]
    cfg = _with_defaults(raw)
    err = validate(cfg)
    if err:
        return None, err
    try:
        write_json(path, raw)
    except OSError as e:
        return None, "flash write failed: %r" % (e,)
    return cfg, None
