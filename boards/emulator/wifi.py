"""A board's Wi-Fi: the radio link (cut and restored by tests) and the ESP32 station that the
network shim drives. connect() takes connect_ms and succeeds only while the link is up; a cut
turns the station to STAT_CONNECTING (the ESP32 retries by itself) until the link returns."""
from __future__ import annotations

import asyncio
from typing import Callable, Optional

# network.STAT_* (ESP32 port)
STAT_IDLE, STAT_CONNECTING, STAT_GOT_IP = 1000, 1001, 1010
STAT_NO_AP_FOUND, STAT_WRONG_PASSWORD = 201, 202


class WifiStation:
    def __init__(self, link: bool, connect_ms: int, ssid: str | None, key: str | None,
                 on_change: Callable[[], None]) -> None:
        self.link = bool(link)  # the radio link (b.wifi(False) cuts it)
        self.connect_ms = int(connect_ms)
        self.ssid = ssid  # None: any SSID/key is accepted
        self.key = key
        self.active = False  # WLAN(STA_IF).active()
        self.want: Optional[tuple[str, str | None]] = None  # (ssid, key) of WLAN.connect()
        self.status = STAT_IDLE
        # the number of the shim's last WLAN call: every state push carries it, so the shim can
        # drop a push that left before its newest call and would undo what that call set
        self.seq = 0
        self._timer: Optional[asyncio.TimerHandle] = None
        self._on_change = on_change  # pushes the new state to the shim and the proxy

    def net_up(self) -> bool:
        return self.link and self.status == STAT_GOT_IP

    def shown_ssid(self) -> str:
        return self.want[0] if self.want else (self.ssid or "")

    def command(self, m: dict) -> None:
        """A WLAN call from the network shim: active / connect / disconnect."""
        c = m.get("c")
        self.seq = int(m.get("q", 0))
        if c == "active":
            self.active = bool(m.get("v"))
            if not self.active:
                self.want = None
                self.status = STAT_IDLE
            self._update()
        elif c == "connect":
            ssid, key = m.get("ssid"), m.get("key")
            if self.ssid is not None and ssid != self.ssid:
                self.want = None
                self.status = STAT_CONNECTING
                self._status_later(STAT_NO_AP_FOUND)
            elif self.key is not None and key != self.key:
                self.want = None
                self.status = STAT_CONNECTING
                self._status_later(STAT_WRONG_PASSWORD)
            else:
                self.want = (ssid or "", key)
                self.status = STAT_CONNECTING
                self._update()
        elif c == "disconnect":
            self.want = None
            self.status = STAT_IDLE
            self._update()
        self._on_change()

    def _status_later(self, status: int) -> None:
        if self._timer is not None:
            self._timer.cancel()

        def done() -> None:
            self._timer = None
            self.status = status
            self._on_change()

        self._timer = asyncio.get_running_loop().call_later(self.connect_ms / 1000, done)

    def _update(self) -> None:
        # (re)connect when the station wants a network and the link allows it
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not (self.want and self.active):
            return
        if not self.link:
            self.status = STAT_CONNECTING  # the ESP32 keeps retrying
            return
        if self.status != STAT_GOT_IP:
            self.status = STAT_CONNECTING

            def done() -> None:
                self._timer = None
                if self.want and self.active and self.link:
                    self.status = STAT_GOT_IP
                    self._on_change()

            self._timer = asyncio.get_running_loop().call_later(self.connect_ms / 1000, done)

    def set_link(self, up: bool) -> None:
        self.link = bool(up)
        if not self.link and self.status == STAT_GOT_IP:
            self.status = STAT_CONNECTING
        self._update()
        self._on_change()

    def reset(self) -> None:
        """Cold start: the station is off (it survives only a soft reset)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.active = False
        self.want = None
        self.status = STAT_IDLE
        self.seq = 0  # the shim starts counting again
