"""TerminalUpdate: one terminal brought to a signed package over its live session (docs/PROTOCOL.md
section 12; every argument and answer is otaproto's): ask the terminal's update status (its key
and installed serial) before sending anything, BEGIN with the signature, declare every file, send
the chunks (each acknowledged by RESULT, WINDOW in flight; a dropped session resumes where the
terminal says it stopped), commit, wait for the reboot, and ask CMD_OTA_STATUS until the terminal
reports "confirmed", "rolled_back" or "refused".
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from ..protocol import otaproto, wardproto
from .jobs import DeviceUpdate, Job

if TYPE_CHECKING:
    from .service import OtaService

CHUNK = otaproto.chunk_size()   # data bytes per CMD_OTA_CHUNK (960)
WINDOW = 2                      # chunks in flight per terminal
ANSWER_S = 10.0                 # a command unanswered this long: the session is taken as lost
RECONNECT_S = 60.0              # wait this long for a terminal to come back (session lost, reboot)
BUSY_RETRY_S = 60.0             # a commit refused as busy (undelivered calls) is retried this long
MAX_RESUMES = 5
NO_MEMORY_RETRY_S = 2.0         # a terminal that ran out of heap is asked again after this long
STATUS_TRIES = 5                # a status answered "no_memory" is asked again this many times
CHECK_ROUNDS = 40               # commands a terminal may take to finish the signature check (it needs 9)


class LinkLost(Exception):
    pass


class Refused(Exception):
    """The terminal answered ok 0 (or something unexpected): the parsed otaproto detail."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.code = answer.get("c")
        self.detail = otaproto.describe(answer)
        super().__init__(self.detail)


def _at(answer: dict[str, Any]) -> tuple[int, int, int]:
    """(declared, file, offset) of an "at" answer; anything else is unexpected."""
    d, f, o = answer.get("d"), answer.get("f"), answer.get("o")
    if answer.get("c") != otaproto.R_AT or not all(isinstance(v, int) and v >= 0 for v in (d, f, o)):
        raise Refused({"c": otaproto.R_TEXT, "m": f"unexpected answer: {otaproto.describe(answer)}"})
    return d, f, o


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
        if not await self._precheck(link):
            return
        self._set("sending", f"{len(pkg.files)} file(s), {pkg.size} bytes")
        link = await self._send_package(link)
        if link is None or not await self._commit(link):
            return
        self._set("rebooting", "installing")
        await self._verify(link)

    async def _precheck(self, link: Any) -> bool:
        """The terminal's key and installed serial, before anything is sent: a terminal that would
        refuse the package fails here with the reason."""
        du, pkg = self.du, self.job.package
        try:
            st = await self._status(link)
        except (LinkLost, Refused) as exc:
            self._finish("failed", f"no update status: {exc}")
            return False
        if st.get("c") != otaproto.R_STATUS:
            self._finish("failed", "its firmware does not take signed updates: deploy it (wardcall deploy)")
            return False
        key, serial = st.get("key"), st.get("serial")
        if isinstance(serial, int):
            self.service.note_serial(du.device, serial)
        if not key:
            self._finish("failed", "refused: no update key installed: deploy it (wardcall deploy installs the ward's key)")
            return False
        if key != pkg.kid:
            self._finish("failed", f"refused: the terminal trusts update key {key}, the package is signed with "
                                   f"{pkg.kid}: deploy it with this ward's key")
            return False
        if isinstance(serial, int) and pkg.serial <= serial:
            self._finish("failed", f"refused: downgrade: serial {pkg.serial} is not newer than the installed "
                                   f"serial {serial}")
            return False
        return True

    async def _send_package(self, link: Any) -> Any:
        """The whole package, resumed after lost sessions; the session it ended on (None: failed)."""
        du = self.du
        while True:
            try:
                await self._transfer(link)
                return link
            except Refused as exc:
                if exc.code == otaproto.R_NO_MEMORY and du.resumes < MAX_RESUMES:
                    # it dropped the update to keep its calls going: start again a little later
                    du.resumes += 1
                    self._set("sending", f"{exc.detail}: sending it again")
                    await asyncio.sleep(NO_MEMORY_RETRY_S)
                    continue
                await self._abort(link)
                self._finish("failed", f"refused by the terminal: {exc.detail}")
                return None
            except LinkLost as exc:
                du.resumes += 1
                if du.resumes > MAX_RESUMES:
                    self._finish("failed", f"session lost {du.resumes} times: {exc}")
                    return None
                self._set("sending", f"session lost ({exc}): waiting to resume")
                new = await self._wait_link(link, RECONNECT_S, same_ok=True)
                if new is None:
                    self._finish("failed", f"session lost during the transfer and not back within {RECONNECT_S:g} s")
                    return None
                link = new

    async def _transfer(self, link: Any) -> None:
        job, du = self.job, self.du
        pkg = job.package
        manifest = pkg.manifest()
        hdr = {"v": pkg.version, "serial": pkg.serial, "n": len(manifest), "size": pkg.size,
               "m": otaproto.manifest_digest(manifest), "kid": pkg.kid, "trial_s": job.trial_s}
        answer = await self._command(link, wardproto.CMD_OTA_BEGIN, otaproto.encode_begin(hdr, pkg.signature))
        declared, f, o = _at(answer)
        for i in range(declared, len(manifest)):      # the whole manifest before the first chunk
            answer = await self._command(link, wardproto.CMD_OTA_FILE, otaproto.encode_file(i, *manifest[i]))
            declared, f, o = _at(answer)
        if declared != len(manifest):
            raise Refused({"c": otaproto.R_TEXT, "m": f"{declared} of {len(manifest)} file(s) declared"})
        # the terminal checks the signature a slice per command: declare the last file again until done
        for _ in range(CHECK_ROUNDS):
            if answer.get("sig") == "ok":
                break
            answer = await self._command(link, wardproto.CMD_OTA_FILE, otaproto.encode_file(len(manifest) - 1, *manifest[-1]))
            declared, f, o = _at(answer)
        else:
            raise Refused({"c": otaproto.R_CHECKING})
        du.sent = sum(e[1] for e in manifest[:f]) + o
        for i in range(f, len(manifest)):
            size, data = manifest[i][1], pkg.files[i][1]
            off = o if i == f else 0
            inflight: list[tuple[int, asyncio.Future, int]] = []
            last_pub = du.sent
            try:
                while off < size or inflight:
                    while off < size and len(inflight) < WINDOW:
                        piece = data[off:off + CHUNK]
                        cmd_id, fut = self._send(link, wardproto.CMD_OTA_CHUNK, otaproto.encode_chunk(i, off, piece))
                        inflight.append((cmd_id, fut, len(piece)))
                        off += len(piece)
                    cmd_id, fut, n = inflight.pop(0)
                    _at(await self._answer(link, cmd_id, fut))
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
                if exc.code == otaproto.R_BUSY_CALLS and time.monotonic() < deadline:
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
                st = await self._status(link)
            except LinkLost as exc:
                if time.monotonic() > deadline:
                    self._finish("failed", f"no update status before the end of its trial: {exc}")
                    return
                new = await self._wait_link(link, RECONNECT_S, same_ok=True)
                if new is None:
                    self._finish("failed", "went offline during its trial and did not come back")
                    return
                link = new
                continue
            except Refused as exc:
                self._finish("failed", f"no update status: {exc.detail}")
                return
            du.version = st.get("run", "")
            s, ours = st.get("s"), st.get("v") == pkg.version
            if s == "confirmed" and ours and du.version == pkg.version:
                if isinstance(st.get("serial"), int):
                    self.service.note_serial(du.device, st["serial"])
                self._finish("ok", f"runs {pkg.version}")
                return
            if s == "rolled_back" and ours:
                self._finish("rolled_back", f"back on {du.version}: {st.get('why', '')}")
                return
            if s == "refused" and ours:
                self._finish("failed", f"not installed by the terminal's boot check: {st.get('why', '')}")
                return
            if s not in ("trial", "pending") or time.monotonic() > deadline:
                self._finish("failed", f"unexpected update state {s!r} (runs {du.version})")
                return
            if du.state != "trial":
                self._set("trial", f"runs {du.version}, waiting for its confirmation")
            await asyncio.sleep(0.5)

    async def _status(self, link: Any) -> dict[str, Any]:
        """CMD_OTA_STATUS; asked again while the terminal answers that it has no memory for it."""
        for _ in range(STATUS_TRIES - 1):
            try:
                return await self._command(link, wardproto.CMD_OTA_STATUS)
            except Refused as exc:
                if exc.code != otaproto.R_NO_MEMORY:
                    raise
            await asyncio.sleep(NO_MEMORY_RETRY_S)
        return await self._command(link, wardproto.CMD_OTA_STATUS)

    async def _abort(self, link: Any) -> None:
        try:
            await self._command(link, wardproto.CMD_OTA_ABORT)
        except (LinkLost, Refused):
            pass

    # ----- commands on the terminal's session, answered by RESULT (hub.take_result) -----

    def _link(self) -> Any:
        return self.hub.links.get(self.du.device)

    async def _wait_link(self, old: Any, timeout: float, same_ok: bool = False) -> Any:
        """The terminal's session once it is a live one other than `old` (None after timeout).
        same_ok: `old` itself will do while it is live (a command went unanswered but the session
        is up: e.g. the terminal could not handle it, out of memory; the next one may pass)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            link = self._link()
            if link is not None and (link is not old or same_ok) and getattr(link, "closed_because", None) is None:
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

    async def _answer(self, link: Any, cmd_id: int, fut: asyncio.Future) -> dict[str, Any]:
        deadline = time.monotonic() + ANSWER_S
        try:
            while True:
                done, _ = await asyncio.wait({fut}, timeout=0.25)
                if done:
                    ok, detail = fut.result()
                    answer = otaproto.parse_result(detail)
                    if not ok:
                        raise Refused(answer)
                    return answer
                if self._link() is not link or getattr(link, "closed_because", None) is not None:
                    raise LinkLost("session ended")
                if time.monotonic() > deadline:
                    raise LinkLost(f"no answer within {ANSWER_S:g} s")
        finally:
            self.hub.result_waiters.pop(cmd_id, None)

    async def _command(self, link: Any, cmd: int, arg: bytes = b"") -> dict[str, Any]:
        cmd_id, fut = self._send(link, cmd, arg)
        return await self._answer(link, cmd_id, fut)
