# Emulated ESP32 board: `network` (WLAN only). The station state lives in the supervisor (it
# survives a soft reset as on an ESP32, and is lost on a hard reset). connect() succeeds only while
# the supervisor says the radio link is up; after a link loss the station keeps retrying and gets
# its address back when the link returns (ESP32 auto-reconnect). Every address is loopback.
import json
import _emu

STA_IF = 0
AP_IF = 1

STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_BEACON_TIMEOUT = 200
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_ASSOC_FAIL = 203
STAT_HANDSHAKE_TIMEOUT = 204
STAT_CONNECT_FAIL = 203

AUTH_OPEN = 0
AUTH_WEP = 1
AUTH_WPA_PSK = 2
AUTH_WPA2_PSK = 3
AUTH_WPA_WPA2_PSK = 4
AUTH_WPA2_ENTERPRISE = 5
AUTH_WPA3_PSK = 6
AUTH_WPA2_WPA3_PSK = 7
AUTH_MAX = 8

PHY_LAN8710 = 0
MODE_11B = 1
MODE_11G = 2
MODE_11N = 4

_hostname = "mpy-" + _emu.NAME
_country = "XX"
_ifs = {}


def _cmd(**kw):
    # numbered, so that a state push sent before this call cannot undo it (see _emu._net)
    _emu.net_seq += 1
    kw["q"] = _emu.net_seq
    _emu.send("N " + json.dumps(kw))


def hostname(name=None):
    global _hostname
    if name is None:
        return _hostname
    _hostname = name


def country(c=None):
    global _country
    if c is None:
        return _country
    _country = c


class WLAN:
    IF_STA = 0
    IF_AP = 1
    PM_NONE = 0
    PM_PERFORMANCE = 1
    PM_POWERSAVE = 2

    def __new__(cls, interface=STA_IF):
        w = _ifs.get(interface)
        if w is None:
            w = object.__new__(cls)
            w._if = interface
            w._cfg = {}
            _ifs[interface] = w
        return w

    def __init__(self, interface=STA_IF):
        pass

    def active(self, is_active=None):
        _emu.service()
        if self._if == AP_IF:
            if is_active is None:
                return _emu.ap_active
            _emu.ap_active = bool(is_active)
            _cmd(c="ap", v=bool(is_active))
            return
        if is_active is None:
            return _emu.sta_active
        _emu.sta_active = bool(is_active)
        if not is_active:
            _emu.sta = STAT_IDLE
            _emu.net = False
        _cmd(c="active", v=bool(is_active))

    def connect(self, ssid=None, key=None, *, bssid=None):
        if self._if != STA_IF:
            raise OSError("AP can't connect")
        if not _emu.sta_active:
            raise OSError("Wifi Not Started")
        _emu.sta = STAT_CONNECTING
        _emu.net = False
        _cmd(c="connect", ssid=ssid, key=key)

    def disconnect(self):
        _emu.sta = STAT_IDLE
        _emu.net = False
        _cmd(c="disconnect")

    def isconnected(self):
        _emu.service()
        if self._if == AP_IF:
            return False
        return _emu.sta == STAT_GOT_IP

    def status(self, param=None):
        _emu.service()
        if param == "rssi":
            if _emu.sta != STAT_GOT_IP:
                raise OSError("STA is not connected")
            return -55
        if param == "stations":
            return []
        if self._if == AP_IF:
            return STAT_IDLE
        return _emu.sta

    def scan(self):
        _emu.service()
        if not _emu.sta_active:
            raise OSError("Wifi Not Started")
        if _emu.ssid:
            return [(_emu.ssid.encode(), b"\x02\x00\x00\x00\x00\x01", 6, -55, AUTH_WPA2_PSK, False)]
        return []

    def ifconfig(self, config=None):
        if config is not None:
            return
        if self._if == AP_IF:
            return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")
        if _emu.sta != STAT_GOT_IP:
            return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")
        return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")

    def ipconfig(self, *args, **kw):
        if kw:
            return
        c = self.ifconfig()
        if args and args[0] == "addr4":
            return (c[0], c[1])
        if args and args[0] == "gw4":
            return c[2]
        return None

    def config(self, *args, **kw):
        if kw:
            self._cfg.update(kw)
            return
        if not args:
            raise TypeError("can query only one param")
        p = args[0]
        if p == "mac":
            b = (_emu.UID_BYTES + bytes(6))[:6]  # from machine.unique_id(), as on an ESP32
            return bytes([b[0] & 0xFC | 0x02]) + b[1:5] + bytes([(b[5] + self._if) & 0xFF])
        if p in ("ssid", "essid"):
            return self._cfg.get(p, _emu.ssid if self._if == STA_IF else "MPY-AP")
        if p in ("hostname", "dhcp_hostname"):
            return _hostname
        if p == "channel":
            return 6
        if p == "txpower":
            return 20
        if p == "pm":
            return self._cfg.get("pm", 1)
        if p == "reconnects":
            return self._cfg.get("reconnects", -1)
        if p in self._cfg:
            return self._cfg[p]
        raise ValueError("unknown config param")


class LAN:
    def __init__(self, *args, **kw):
        raise OSError("no Ethernet on this board")
