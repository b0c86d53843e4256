"""TerminalUpdate: one terminal brought to a package over its live session (docs/PROTOCOL.md
section 12): send the files with CMD_OTA_* commands (each chunk acknowledged by RESULT, WINDOW in
flight; a dropped session resumes where the terminal says it stopped), commit, wait for the
reboot, and ask CMD_OTA_STATUS until the terminal reports "confirmed" or "rolled_back".
"""
from __future__ import annotations

import asyncio
import json
import re
import struct
import time
from typing import TYPE_CHECKING, Any

from ..protocol import wardproto
from .jobs import DeviceUpdate, Job

if TYPE_CHECKING:
    from .service import OtaService

CHUNK = 960                     # data bytes per CMD_OTA_CHUNK (wardproto.OTA_CHUNK_MAX = 970)
WINDOW = 2                      # chunks in flight per terminal
ANSWER_S = 10.0                 # a command unanswered this long: the session is taken as lost
RECONNECT_S = 60.0              # wait this long for a terminal to come back (session lost, reboot)
BUSY_RETRY_S = 60.0             # a commit refused as busy (undelivered calls) is retried this long
MAX_RESUMES = 5


class LinkLost(Exception):
    pass


class Refused(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class TerminalUpdate:
    def __init__(self, service: OtaService, job: Job, du: DeviceUpdate) -> None:
        self.service = service
        self.hub = service.hub
        self.job = job
        self.du = du

    def _set(self, state: str, detail: str = "") -> None:
        self.service.set_state(self.job, self.du, state, detail)

    def _finish(self, state: str, detail: str) -> None:
        self.service.finish(self.job, self.du, state, detail)

    # ----- the steps -----

    async def run(self, force: bool) -> None:
        du, pkg = self.du, self.job.package
        link = self._link()
        if link is None:
            self._finish("failed", "not connected")
            return
        terminal = self.hub.ward.terminals[du.device]
        du.from_version = terminal.firmware
        if terminal.firmware == pkg.version and not force:
            du.version = terminal.firmware
            self._finish("skipped", f"already runs {pkg.version}")
            return
        self._set("sending", f"{len(pkg.files)} file(s), {pkg.size} bytes")
        link = await self._send_package(link)
        if link is None or not await self._commit(link):
            return
        self._set("rebooting", "installing")
        await self._verify(link)

    async def _send_package(self, link: Any) -> Any:
        """The whole package, resumed after lost sessions; the session it ended on (None: failed)."""
        du = self.du
        while True:
            try:
                await self._transfer(link)
                return link
            except Refused as exc:
                await self._abort(link)
                self._finish("failed", f"refused by the terminal: {exc.detail}")
                return None
            except LinkLost as exc:
                du.resumes += 1
                if du.resumes > MAX_RESUMES:
                    self._finish("failed", f"session lost {du.resumes} times: {exc}")
                    return None
                self._set("sending", f"session lost ({exc}): waiting to resume")
                new = await self._wait_link(link, RECONNECT_S)
                if new is None:
                    self._finish("failed", f"session lost during the transfer and not back within {RECONNECT_S:g} s")
                    return None
                link = new

    async def _transfer(self, link: Any) -> None:
        job, du = self.job, self.du
        pkg = job.package
        manifest = pkg.manifest()
        begin = json.dumps({"v": pkg.version, "n": len(manifest), "size": pkg.size, "id": pkg.id,
                            "trial_s": job.trial_s}, separators=(",", ":")).encode()
        at = await self._command(link, wardproto.CMD_OTA_BEGIN, begin)
        m = re.fullmatch(r"at (\d+) (\d+)", at)
        if not m:
            raise Refused(f"unexpected answer to BEGIN: {at}")
        start = int(m.group(1))
        du.sent = sum(f[1] for f in manifest[:start])
        for i in range(start, len(manifest)):
            path, size, sha = manifest[i]
            data = pkg.files[i][1]
            ans = await self._command(link, wardproto.CMD_OTA_FILE,
                                      json.dumps([i, path, size, sha], separators=(",", ":")).encode())
            if ans.startswith("done"):
                du.sent += size
                continue
            m = re.fullmatch(r"at (\d+)", ans)
            if not m:
                raise Refused(f"unexpected answer to FILE: {ans}")
            off = int(m.group(1))
            du.sent += off
            inflight: list[tuple[int, asyncio.Future, int]] = []
            last_pub = du.sent
            try:
                while off < size or inflight:
                    while off < size and len(inflight) < WINDOW:
                        piece = data[off:off + CHUNK]
                        cmd_id, fut = self._send(link, wardproto.CMD_OTA_CHUNK, struct.pack(">HI", i, off) + piece)
                        inflight.append((cmd_id, fut, len(piece)))
                        off += len(piece)
                    cmd_id, fut, n = inflight.pop(0)
                    await self._answer(link, cmd_id, fut)
                    du.sent += n
                    if du.sent - last_pub >= max(pkg.size // 10, CHUNK):
                        last_pub = du.sent
                        self.service.publish(job, du)
            finally:
                for cmd_id, fut, _ in inflight:
                    # their RESULTs may still come: swallowed (not recorded) for a while
                    fut.cancel()
                    asyncio.get_running_loop().call_later(30, self.hub.result_waiters.pop, cmd_id, None)
        self.service.publish(job, du)

    async def _commit(self, link: Any) -> bool:
        """Install at the next boot; False if the terminal refused (the update has failed)."""
        self._set("committing", "all files received and verified")
        deadline = time.monotonic() + BUSY_RETRY_S
        while True:
            try:
                await self._command(link, wardproto.CMD_OTA_COMMIT)
                return True
            except Refused as exc:
                if exc.detail.startswith("busy") and time.monotonic() < deadline:
                    self._set("committing", f"waiting: {exc.detail}")
                    await asyncio.sleep(1.0)
                    continue
                await self._abort(link)
                self._finish("failed", f"commit refused: {exc.detail}")
                return False
            except LinkLost:
                return True     # it may have committed and rebooted before the RESULT left: ask it later

    async def _verify(self, old: Any) -> None:
        """After the reboot: wait for the terminal's verdict on its trial of the new firmware."""
        job, du = self.job, self.du
        pkg = job.package
        link = await self._wait_link(old, RECONNECT_S)
        if link is None:
            self._finish("failed", f"not back online within {RECONNECT_S:g} s of the reboot")
            return
        deadline = time.monotonic() + job.trial_s + RECONNECT_S
        while True:
            try:
                st = json.loads(await self._command(link, wardproto.CMD_OTA_STATUS))
            except LinkLost:
                new = await self._wait_link(link, RECONNECT_S)
                if new is None:
                    self._finish("failed", "went offline during its trial and did not come back")
                    return
                link = new
                continue
            except (Refused, ValueError) as exc:
                self._finish("failed", f"no update status: {exc}")
                return
            du.version = st.get("run", "")
            s = st.get("s")
            if s == "confirmed" and st.get("v") == pkg.version and du.version == pkg.version:
                self._finish("ok", f"runs {pkg.version}")
                return
            if s == "rolled_back" and st.get("v") == pkg.version:
                self._finish("rolled_back", f"back on {du.version}: {st.get('why', '')}")
                return
            if s not in ("trial", "pending") or time.monotonic() > deadline:
                self._finish("failed", f"unexpected update state {s!r} (runs {du.version})")
                return
            if du.state != "trial":
                self._set("trial", f"runs {du.version}, waiting for its confirmation")
            await asyncio.sleep(0.5)

    async def _abort(self, link: Any) -> None:
        try:
            await self._command(link, wardproto.CMD_OTA_ABORT)
        except (LinkLost, Refused):
            pass

    # ----- commands on the terminal's session, answered by RESULT (hub.take_result) -----

    def _link(self) -> Any:
        return self.hub.links.get(self.du.device)

    async def _wait_link(self, old: Any, timeout: float) -> Any:
        """The terminal's session once it is a live one other than `old` (None after timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            link = self._link()
            if link is not None and link is not old and getattr(link, "closed_because", None) is None:
                return link
            await asyncio.sleep(0.1)
        return None

    def _send(self, link: Any, cmd: int, arg: bytes) -> tuple[int, asyncio.Future]:
        if self._link() is not link:
            raise LinkLost("session ended")
        cmd_id = self.hub.next_cmd_id()
        fut = asyncio.get_running_loop().create_future()
        self.hub.result_waiters[cmd_id] = (self.du.device, fut)
        link.send(wardproto.COMMAND, {"cmd_id": cmd_id, "cmd": cmd, "arg": arg})
        return cmd_id, fut

    async def _answer(self, link: Any, cmd_id: int, fut: asyncio.Future) -> str:
        deadline = time.monotonic() + ANSWER_S
        try:
            while True:
                done, _ = await asyncio.wait({fut}, timeout=0.25)
                if done:
                    ok, detail = fut.result()
                    if not ok:
                        raise Refused(detail)
                    return detail
                if self._link() is not link or getattr(link, "closed_because", None) is not None:
                    raise LinkLost("session ended")
                if time.monotonic() > deadline:
                    raise LinkLost(f"no answer within {ANSWER_S:g} s")
        finally:
            self.hub.result_waiters.pop(cmd_id, None)

    async def _command(self, link: Any, cmd: int, arg: bytes = b"") -> str:
        cmd_id, fut = self._send(link, cmd, arg)
        return await self._answer(link, cmd_id, fut)
