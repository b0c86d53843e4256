"""A board's pins as the supervisor sees them.

Inputs are contacts to GND that the supervisor opens and closes (pushed to the machine shim);
outputs are reported by the shim with the board's own timestamps and kept with their history.
Pins are named as in board.py (the pin map the firmware imports), or "gpioN".
"""
from __future__ import annotations

import collections
import runpy
import time
from pathlib import Path
from typing import Any, Callable, Optional

HISTORY_MAX = 20000  # entries kept per output


_BOARD = runpy.run_path(str(Path(__file__).resolve().parent / "board.py"))
PINS = {k.lower(): v for k, v in _BOARD.items() if k.isupper() and isinstance(v, int)}
# the badge reader's (SPI bus, SCK, MOSI, MISO, CS, RST): its CS and RST pins are the virtual
# MFRC522's (shims/_emu_mfrc522.py), seen by it and not reported as outputs
BADGE: Optional[tuple[int, ...]] = tuple(_BOARD["BADGE"]) if _BOARD.get("BADGE") else None
PIN_NAMES = {v: k for k, v in PINS.items()}
INPUTS = ("call", "presence", "assist", "code", "cord_pull", "cord_loop")
# cord state -> (cord_pull closed, cord_loop closed)
CORD_CONTACTS = {"ok": (False, True), "pulled": (True, True), "unplugged": (False, False)}

# an output: (value, freq, t); a history entry: (t, value, freq). value: 0/1, PWM duty_u16 or
# None = undriven; freq: PWM frequency or None; t: the board's time.monotonic() in seconds
Output = tuple[Optional[int], Optional[int], float]
Change = tuple[float, Optional[int], Optional[int]]


def pin_number(name: str | int) -> int:
    if isinstance(name, int):
        return name
    n = str(name).lower()
    if n in PINS:
        return PINS[n]
    if n.startswith("gpio") and n[4:].isdigit():
        return int(n[4:])
    if n.isdigit():
        return int(n)
    raise KeyError(f"unknown pin {name!r}")


def pin_name(num: int) -> str:
    return PIN_NAMES.get(num, f"gpio{num}")


class Gpio:
    def __init__(self, cord: str, push: Callable[[dict[str, Any]], None],
                 changed: Callable[[], None]) -> None:
        self._push = push  # sends a message to the board's shims
        self._changed = changed
        self.closed: dict[int, bool] = {PINS[n]: False for n in INPUTS}
        # input changes are numbered; seen[pin] is the number of the last change the board has
        # read steadily (see set_input's settle_ms)
        self.seen: dict[int, int] = {}
        self._seq = 0
        self.outputs: dict[int, Output] = {}
        self.history: dict[int, collections.deque[Change]] = {}
        self.set_cord(cord, push=False)

    # -- inputs
    def set_input(self, pin: int, closed: bool, settle_ms: int = 0) -> int:
        """Open or close the contact; returns the change's number. With settle_ms, the board
        reports once its own code has read the new level at two reads settle_ms or more apart
        (what a debouncing input loop needs to accept it): seen[pin] then reaches the number."""
        self._seq += 1
        self.closed[pin] = bool(closed)
        m: dict[str, Any] = {"k": "in", "p": pin, "c": bool(closed)}
        if settle_ms > 0:
            m.update(n=self._seq, w=int(settle_ms))
        self._push(m)
        self._changed()
        return self._seq

    def input_seen(self, pin: int, seq: int) -> None:
        """The board has read change `seq` of pin steadily (reported by its machine shim)."""
        if seq > self.seen.get(pin, 0):
            self.seen[pin] = seq
            self._changed()

    def set_cord(self, state: str, push: bool = True) -> None:
        pull, loop_ = CORD_CONTACTS[state]
        if push:
            self.set_input(PINS["cord_pull"], pull)
            self.set_input(PINS["cord_loop"], loop_)
        else:
            self.closed[PINS["cord_pull"]] = pull
            self.closed[PINS["cord_loop"]] = loop_

    # -- outputs
    def record_output(self, pin: int, value: int | None, freq: int | None, t: float) -> None:
        cur = self.outputs.get(pin)
        if cur is not None and cur[0] == value and cur[1] == freq:
            return
        self.outputs[pin] = (value, freq, t)
        h = self.history.get(pin)
        if h is None:
            h = self.history[pin] = collections.deque(maxlen=HISTORY_MAX)
        h.append((t, value, freq))
        self._changed()

    def outputs_undriven(self) -> None:
        """The interpreter stopped: every driven output floats (None in the history)."""
        t = time.monotonic()
        for pin, (v, _, _) in list(self.outputs.items()):
            if v is not None:
                self.record_output(pin, None, None, t)
