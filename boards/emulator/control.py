"""The control channel: JSON lines over TCP, the API behind boards/emulator/fleet.py.

Request `{"id": 1, "op": "add_board", "name": "b1", "flash": "/path"}` -> answer
`{"id": 1, "ok": true, "result": {...}}` or `{"id": 1, "ok": false, "error": "..."}`.
The ops are the `op_*` methods below. Requests on one connection are handled concurrently and
answered by id; waits (wait_output, wait_console, wait_state...) happen here, not in the client.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from .board_process import DEFAULT_HEAPSIZE, PWRON_RESET
from .emulated_board import Board
from .gpio import Output, pin_name, pin_number

if TYPE_CHECKING:
    from .fleet_server import FleetServer


class ControlChannel:
    def __init__(self, sup: FleetServer) -> None:
        self.sup = sup

    async def start(self, port: int = 0) -> asyncio.Server:
        """Listen on 127.0.0.1:port (0: any free port)."""
        return await asyncio.start_server(self._conn, "127.0.0.1", port, backlog=256)

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lock = asyncio.Lock()
        tasks = set()

        async def handle(line: bytes) -> None:
            try:
                req = json.loads(line)
            except ValueError:
                return
            rid = req.pop("id", None)
            op = req.pop("op", "")
            try:
                fn = getattr(self, "op_" + op)
            except AttributeError:
                resp = {"id": rid, "ok": False, "error": f"unknown op {op!r}"}
            else:
                try:
                    resp = {"id": rid, "ok": True, "result": await fn(**req)}
                except Exception as e:
                    resp = {"id": rid, "ok": False, "error": f"{type(e).__name__}: {e}"}
            async with lock:
                writer.write(json.dumps(resp).encode() + b"\n")
                try:
                    await writer.drain()
                except (ConnectionError, OSError):
                    pass

        try:
            for _ in range(1 << 40):
                line = await reader.readline()
                if not line:
                    break
                t = asyncio.get_running_loop().create_task(handle(line))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
        except (ConnectionError, OSError, asyncio.LimitOverrunError, ValueError,
                asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def _board(self, name: str) -> Board:
        b = self.sup.boards.get(name)
        if b is None:
            raise KeyError(f"no board {name!r}")
        return b

    async def op_ping(self) -> dict[str, int]:
        return {"boards": len(self.sup.boards), "pid": os.getpid()}

    async def op_add_board(self, name: str, flash: str, heapsize: str = DEFAULT_HEAPSIZE,
                           wrap_s: int = 20, wifi: bool = True, cord: str = "ok",
                           connect_ms: int = 100, ssid: Optional[str] = None,
                           key: Optional[str] = None, boot: bool = True,
                           uid: Optional[str] = None) -> dict[str, Any]:
        if name in self.sup.boards:
            raise ValueError(f"board {name!r} exists")
        if not (0 < int(wrap_s) < 1070):
            raise ValueError("wrap_s must be in 1..1069")
        Path(flash).mkdir(parents=True, exist_ok=True)
        b = Board(self.sup, name, flash, heapsize, wrap_s, wifi, cord, connect_ms, ssid, key,
                  uid)
        self.sup.boards[name] = b
        await b.repl.open()
        if boot:
            b.process.cold_boot(PWRON_RESET)
        return b.info()

    async def op_remove_board(self, name: str) -> bool:
        b = self._board(name)
        b.process.remove()
        await b.changed.wait(lambda: b.process.proc is None, 5)
        b.repl.close()
        for c in list(b.conns):
            c.close(rst_remote=True)
        del self.sup.boards[name]
        return True

    async def op_boards(self) -> list[dict[str, Any]]:
        return [b.info() for b in self.sup.boards.values()]

    async def op_info(self, name: str) -> dict[str, Any]:
        return self._board(name).info()

    async def op_input(self, name: str, pin: str | int, closed: bool, settle_ms: int = 0,
                       timeout: float = 10.0) -> bool:
        """Open or close a contact. With settle_ms, answer only once the board's code has read
        the new level at two reads settle_ms apart (raises if it has not within timeout)."""
        b = self._board(name)
        p = pin_number(pin)
        seq = b.gpio.set_input(p, closed, settle_ms)
        await self._settled(b, p, seq, closed, settle_ms, timeout)
        return True

    async def op_tap(self, name: str, pin: str | int, ms: float = 150, settle_ms: int = 0,
                     timeout: float = 10.0) -> bool:
        """Press for ms milliseconds, then release. With settle_ms, the press lasts until the
        board's code has also read it closed at two reads settle_ms apart, and the answer comes
        once it has read the release the same way: a debounced input loop took both."""
        b = self._board(name)
        p = pin_number(pin)

        seq = b.gpio.set_input(p, True, settle_ms)
        await asyncio.sleep(ms / 1000)  # the press duration itself
        try:
            await self._settled(b, p, seq, True, settle_ms, timeout)
        finally:
            seq = b.gpio.set_input(p, False, settle_ms)
        await self._settled(b, p, seq, False, settle_ms, timeout)
        return True

    @staticmethod
    async def _settled(b: Board, p: int, seq: int, closed: bool, settle_ms: int, timeout: float) -> None:
        """Wait until the board's code has read change seq steadily (nothing without settle_ms)."""
        if settle_ms > 0 and not await b.changed.wait(lambda: b.gpio.seen.get(p, 0) >= seq, timeout):
            raise TimeoutError(f"{b.name}: its code did not read {pin_name(p)} "
                               f"{'closed' if closed else 'open'} for {settle_ms} ms within {timeout:g} s")

    async def op_cord(self, name: str, state: str) -> bool:
        self._board(name).gpio.set_cord(state)
        return True

    async def op_badge(self, name: str, uids: Optional[list[str]] = None,
                       reader: Optional[str] = None) -> dict[str, Any]:
        """The cards on the board's badge reader (UIDs in hex, 4, 7 or 10 bytes; [] = none) and
        its chip: "ok", "dead" (MISO held low: reads 0x00) or "floating" (reads 0xFF). None
        leaves either as it is."""
        b = self._board(name)
        dead = {"ok": None, "dead": 0x00, "floating": 0xFF}
        if reader is not None and reader not in dead:
            raise ValueError(f"reader must be one of {', '.join(dead)}, not {reader!r}")
        b.set_badge(b.badge_uids if uids is None else list(uids),
                    b.badge_dead if reader is None else dead[reader])
        return b.info()["badge"]

    async def op_inputs(self, name: str) -> dict[str, bool]:
        b = self._board(name)
        return {pin_name(p): c for p, c in b.gpio.closed.items()}

    async def op_output(self, name: str, pin: str | int) -> dict[str, Any]:
        b = self._board(name)
        v = b.gpio.outputs.get(pin_number(pin))
        if v is None:
            return {"value": None, "freq": None, "t": None}
        return {"value": v[0], "freq": v[1], "t": v[2]}

    async def op_outputs(self, name: str) -> dict[str, dict[str, Any]]:
        b = self._board(name)
        return {pin_name(p): {"value": v[0], "freq": v[1], "t": v[2]}
                for p, v in b.gpio.outputs.items()}

    async def op_history(self, name: str, pin: str | int | None = None,
                         since: Optional[float] = None) -> dict[str, list[list]]:
        b = self._board(name)
        pins = [pin_number(pin)] if pin is not None else list(b.gpio.history)
        out = {}
        for p in pins:
            h = b.gpio.history.get(p, ())
            out[pin_name(p)] = [list(e) for e in h if since is None or e[0] >= since]
        return out

    @staticmethod
    def _match(cur: Optional[Output], value: Any) -> bool:
        v = cur[0] if cur is not None else None
        if value is True:
            return bool(v)
        if value is False:
            return v is not None and not v
        return v == value

    async def op_wait_output(self, name: str, pin: str | int, value: Any,
                             timeout: float = 5.0) -> dict[str, Any]:
        b = self._board(name)
        p = pin_number(pin)
        ok = await b.changed.wait(lambda: self._match(b.gpio.outputs.get(p), value), timeout)
        cur = b.gpio.outputs.get(p)
        return {"ok": ok, "value": cur[0] if cur else None}

    async def op_wifi(self, name: str, up: bool) -> bool:
        self._board(name).wifi.set_link(up)
        return True

    async def op_fault(self, name: str, delay_ms: Optional[float] = None,
                       udp_loss: Optional[float] = None) -> dict[str, float]:
        b = self._board(name)
        if delay_ms is not None:
            b.fault["delay_ms"] = max(0, float(delay_ms))
        if udp_loss is not None:
            b.fault["udp_loss"] = min(1.0, max(0.0, float(udp_loss)))
        b.push_net()
        return dict(b.fault)

    async def op_capture(self, name: str, on: bool) -> bool:
        """Start (on, afresh) or stop keeping the bytes of the board's TCP connections."""
        self._board(name).capture = [] if on else None
        return True

    async def op_captured(self, name: str) -> list[dict[str, str]]:
        """The bytes kept so far, per connection: {"b2r": base64, "r2b": base64}."""
        import base64
        return [{d: base64.b64encode(bytes(c[d])).decode() for d in c} for c in self._board(name).capture or []]

    async def op_power(self, name: str, on: bool) -> dict[str, Any]:
        b = self._board(name)
        if on:
            b.process.power_on()
        else:
            await b.process.power_off()
        return b.info()

    async def op_power_cycle(self, name: str, off_ms: float = 0) -> dict[str, Any]:
        await self.op_power(name, False)
        if off_ms:
            await asyncio.sleep(off_ms / 1000)  # the requested power-off time
        return await self.op_power(name, True)

    async def op_reset(self, name: str) -> bool:
        """The EN (reset) button: reset_cause() == HARD_RESET."""
        b = self._board(name)
        b.process.request_reset("button", 0)
        return True

    async def op_console(self, name: str, since: int = 0) -> dict[str, Any]:
        b = self._board(name)
        c = b.repl
        start = max(int(since) - c.console_base, 0)
        data = bytes(c.console[start:])
        return {
            "text": data.decode("utf-8", "replace"),
            "start": c.console_base + start,
            "end": c.console_base + len(c.console),
        }

    async def op_wait_console(self, name: str, text: str, timeout: float = 5.0,
                              since: int = 0, whole_line: bool = True) -> dict[str, Any]:
        b = self._board(name)
        needle = text.encode()

        def pred():
            con = b.repl.console
            at = con.find(needle, max(int(since) - b.repl.console_base, 0))
            if at < 0:
                return False
            # a test reads the rest of the line it waited for: wait until the board has
            # printed all of it (a prompt, which never ends its line, asks whole_line=False)
            return not whole_line or needle.endswith(b"\n") or con.find(b"\n", at + len(needle)) >= 0

        ok = await b.changed.wait(pred, timeout)
        res = await self.op_console(name, since)
        res["ok"] = ok
        return res

    async def op_state(self, name: str) -> dict[str, Any]:
        return self._board(name).info()

    async def op_wait_state(self, name: str, phase: str | list[str],
                            timeout: float = 5.0) -> dict[str, Any]:
        b = self._board(name)
        phases = phase if isinstance(phase, list) else [phase]
        ok = await b.changed.wait(lambda: b.phase in phases, timeout)
        r = b.info()
        r["ok"] = ok
        return r

    async def op_heap(self, name: str, timeout: float = 1.0) -> Optional[dict[str, Any]]:
        b = self._board(name)
        if b.shim_addr is None:
            return None
        t0 = time.monotonic()
        b.push({"k": "mem"})
        ok = await b.changed.wait(lambda: b.mem is not None and b.mem["t"] >= t0, timeout)
        return dict(b.mem, heapsize=b.heapsize) if ok else None

    async def op_send_repl(self, name: str, data: str) -> bool:
        """Type into the board's REPL (as a client would)."""
        b = self._board(name)
        b.repl.send(data.encode("latin-1"))
        return True

    async def op_stats(self) -> dict[str, Any]:
        pids = [b.process.proc.pid for b in self.sup.boards.values() if b.process.proc is not None]
        return {"pid": os.getpid(), "board_pids": pids}

    async def op_shutdown(self) -> bool:
        asyncio.get_running_loop().create_task(self.sup.shutdown())
        return True
