"""One emulated board: its parts and the state its shims and the control channel see.

  process  board_process.BoardProcess  the interpreter on a pty; resets and power
  repl     repl.Repl                   console, REPL TCP port, user pty, Ctrl-C
  gpio     gpio.Gpio                   input contacts, outputs and their history
  wifi     wifi.WifiStation            radio link and ESP32 station
  wdt      watchdog.Watchdog           the supervisor's copy of machine.WDT
  conns    radio.ProxyConn             the board's TCP connections through the radio proxy
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from .board_process import BoardProcess
from .gpio import BADGE, Gpio
from .notifier import Notifier
from .repl import Repl
from .watchdog import Watchdog
from .wifi import WifiStation

if TYPE_CHECKING:
    from .radio import ProxyConn
    from .shim_channel import Addr
    from .fleet_server import FleetServer


def hwid_hex(uid: str) -> str:
    """A hardware id given as hex text, checked: 1 to 32 bytes (the protocol's HWID_MAX)."""
    try:
        raw = bytes.fromhex(uid)
    except (TypeError, ValueError):
        raise ValueError(f"hwid must be hexadecimal text, not {uid!r}") from None
    if not 1 <= len(raw) <= 32:
        raise ValueError(f"hwid must be 1 to 32 bytes, not {len(raw)}")
    return raw.hex()


def badge_uid(uid: str) -> str:
    """A card's UID given as hex text, checked: 4, 7 or 10 bytes (ISO/IEC 14443 A)."""
    try:
        raw = bytes.fromhex(uid)
    except (TypeError, ValueError):
        raise ValueError(f"a badge UID must be hexadecimal text, not {uid!r}") from None
    if len(raw) not in (4, 7, 10):
        raise ValueError(f"a badge UID has 4, 7 or 10 bytes, not {len(raw)}")
    return raw.hex()


class Board:
    def __init__(self, sup: FleetServer, name: str, flash: str | Path, heapsize: str,
                 wrap_s: int, wifi: bool, cord: str, connect_ms: int, ssid: str | None,
                 key: str | None, uid: str | None = None) -> None:
        self.sup = sup
        self.name = name
        self.flash = Path(flash).resolve()
        self.heapsize = heapsize
        self.wrap_s = int(wrap_s)
        # machine.unique_id(): this board's own, for its whole life (resets, power cycles); a
        # new board (even one added under a removed board's name) gets a new one unless the
        # test names it (a cloned board)
        self.uid = hwid_hex(uid) if uid is not None else os.urandom(6).hex()
        self.changed = Notifier()  # anything an op may wait for changed
        self.fault: dict[str, float] = {"delay_ms": 0, "udp_loss": 0.0}
        self.conns: set[ProxyConn] = set()
        # the bytes on the air, per connection, while capturing: [{"b2r": bytearray, "r2b": ...}]
        self.capture: list[dict[str, bytearray]] | None = None
        # booting / running (a program) / repl / resetting / off
        self.phase = "off"
        # from the current interpreter's shims
        self.shim_addr: Optional[Addr] = None
        self.runner_running = False  # the runner runs boot.py/main.py: Ctrl-C = SIGINT
        self.mem: Optional[dict[str, Any]] = None
        # the badge reader: the cards on it (UIDs in hex) and whether its chip answers; the
        # cards stay on the reader across resets and power cycles, as a card left lying would
        self.badge_uids: list[str] = []
        self.badge_dead: Optional[int] = None
        self.gpio = Gpio(cord, self.push, self.changed.notify)
        self.wifi = WifiStation(wifi, connect_ms, ssid, key, self.push_net)
        self.wdt = Watchdog(name, lambda: self.process.request_reset("wdt", 0))
        self.repl = Repl(self)
        self.process = BoardProcess(self)

    # -- state pushed to the shim
    def net_up(self) -> bool:
        return self.wifi.net_up()

    def net_state(self) -> dict[str, Any]:
        return {
            "k": "net",
            "sta": self.wifi.status,
            "active": self.wifi.active,
            "net": self.net_up(),
            "loss": self.fault.get("udp_loss", 0.0),
            "ssid": self.wifi.shown_ssid(),
            "q": self.wifi.seq,
        }

    def full_state(self) -> dict[str, Any]:
        m = self.net_state()
        m["k"] = "st"
        m["in"] = {str(p): c for p, c in self.gpio.closed.items()}
        m["badge"] = self.badge_state()
        return m

    def badge_state(self) -> dict[str, Any]:
        return {"k": "badge", "uids": list(self.badge_uids), "dead": self.badge_dead}

    def badge_pins(self) -> str:
        """WC_BADGE for the shims: "cs,rst" of the reader ("" without one)."""
        return f"{BADGE[4]},{BADGE[5]}" if BADGE else ""

    def set_badge(self, uids: list[str], dead: Optional[int]) -> None:
        if BADGE is None:
            raise ValueError("this board has no badge reader (boards/emulator/board.py: BADGE = None)")
        self.badge_uids = [badge_uid(u) for u in uids]
        self.badge_dead = dead
        self.push(self.badge_state())
        self.changed.notify()

    def push(self, msg: dict[str, Any]) -> None:
        self.sup.shim.send(self, msg)

    def push_net(self) -> None:
        """The network state or the faults changed: tell the shim and the proxy."""
        self.push(self.net_state())
        for c in list(self.conns):
            c.net_changed()
        self.changed.notify()

    # -- reporting
    def info(self) -> dict[str, Any]:
        p = self.process
        return {
            "name": self.name,
            "flash": str(self.flash),
            "repl_port": self.repl.port,
            "pty": self.repl.pty_path,
            "pid": p.proc.pid if p.proc else None,
            "alive": p.proc is not None,
            "powered": p.powered,
            "phase": self.phase,
            "raw_repl": self.repl.raw,
            "reset_cause": p.cause,
            "starts": p.starts,
            "exit_status": p.exit_status,
            "link": self.wifi.link,
            "sta": self.wifi.status,
            "net_up": self.net_up(),
            "wdt_ms": self.wdt.ms,
            "heapsize": self.heapsize,
            "hwid": self.uid,
            "badge": {"uids": list(self.badge_uids), "reader": "ok" if self.badge_dead is None else "dead"}
            if BADGE else None,
            "connections": len(self.conns),
            "console_end": self.repl.console_base + len(self.repl.console),
        }
