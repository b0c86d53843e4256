"""Over-the-air firmware updates of online terminals through their sessions (docs/DEPLOY.md,
"Over-the-air updates"; the commands are in docs/PROTOCOL.md, "Over-the-air update").

Three parts:
  * build_package(): the files of an update, from a firmware folder (firmware/ by default):
    lib/**/*.py (or, with compile=True, their .mpy from mpy-cross; never both) except the
    modules an update may never replace (boot chain and board pin map, PROTECTED);
  * the server side (OtaService, add_ota_routes): one task per terminal sends the package with
    CMD_OTA_* commands on its live session (each chunk acknowledged by RESULT, WINDOW in flight;
    a dropped session resumes where the terminal says it stopped), commits, waits for the reboot
    and asks CMD_OTA_STATUS until the terminal reports "confirmed" or "rolled_back". Progress
    goes to the console stream as "ota" events and the outcome to the record ("ota_update");
  * the `wardcall update` command (register()), a client of the server's HTTP API.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import logging
import re
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .protocol import wardproto

log = logging.getLogger("wardcall.ota")

PROTECTED = ("boot", "main", "maint", "otaboot", "board")     # as firmware/lib/otaboot.py
CHUNK = 960                     # data bytes per CMD_OTA_CHUNK (wardproto.OTA_CHUNK_MAX = 970)
WINDOW = 2                      # chunks in flight per terminal
ANSWER_S = 10.0                 # a command unanswered this long: the session is taken as lost
RECONNECT_S = 60.0              # wait this long for a terminal to come back (session lost, reboot)
BUSY_RETRY_S = 60.0             # a commit refused as busy (undelivered calls) is retried this long
MAX_RESUMES = 5
MAX_UPLOAD = 4 * 1024 * 1024    # bytes of a package upload (JSON, base64)
DEFAULT_TRIAL_S = 60


class OtaError(Exception):
    pass


# ----- packages -----

@dataclass
class Package:
    version: str
    files: list[tuple[str, bytes]]          # (path on the flash, content), sorted by path

    @property
    def size(self) -> int:
        return sum(len(data) for _, data in self.files)

    def manifest(self) -> list[list[Any]]:
        return [[path, len(data), hashlib.sha256(data).hexdigest()] for path, data in self.files]

    @property
    def id(self) -> str:
        """Names the package: a terminal resumes an interrupted transfer only of the same id."""
        return hashlib.sha256(json.dumps([self.version, self.manifest()]).encode()).hexdigest()[:32]

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version,
                "files": [[path, base64.b64encode(data).decode()] for path, data in self.files]}

    @classmethod
    def from_json(cls, obj: Any) -> "Package":
        try:
            version = obj["version"]
            files = [(str(p), base64.b64decode(d, validate=True)) for p, d in obj["files"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise OtaError(f"bad package: {exc}") from None
        if not isinstance(version, str) or not 0 < len(version.encode()) <= 32:
            raise OtaError("bad package: the version must be text of 1-32 bytes")
        if not files:
            raise OtaError("bad package: no files")
        for path, _ in files:
            if not valid_path(path):
                raise OtaError(f"bad package: {path} may not be updated over the air")
        return cls(version, sorted(files))


def valid_path(path: str) -> bool:
    """As firmware/lib/ota.py valid_path: lib/<name>.py|.mpy, plain names, never PROTECTED."""
    if not re.fullmatch(r"lib/[A-Za-z0-9_\-./]+\.m?py", path) or len(path) > 64:
        return False
    if ".." in path or "//" in path:
        return False
    stem = path.rsplit("/", 1)[1].rsplit(".", 1)[0]
    return bool(stem) and stem not in PROTECTED


def firmware_version(firmware_dir: Path) -> str:
    text = (firmware_dir / "lib" / "version.py").read_text()
    m = re.search(r"""^VERSION\s*=\s*["']([^"']+)["']""", text, re.M)
    if not m:
        raise OtaError(f"no VERSION = \"...\" in {firmware_dir / 'lib' / 'version.py'}")
    return m.group(1)


def build_package(firmware_dir: Path | str | None = None, compile: bool = False) -> Package:
    """The update built from a firmware folder (default: the repository's firmware/)."""
    if firmware_dir is None:
        from .deploy import paths
        firmware_dir = paths.FIRMWARE
    fw = Path(firmware_dir)
    lib = fw / "lib"
    if not lib.is_dir():
        raise OtaError(f"{fw} has no lib/ folder: not a wardcall firmware")
    version = firmware_version(fw)
    files: list[tuple[str, bytes]] = []
    tmp = None
    if compile:
        import tempfile
        from .deploy.build import _compile
        from .deploy.errors import DeployError
        tmp = tempfile.TemporaryDirectory(prefix="wardcall-ota-")
    try:
        for src in sorted(lib.rglob("*.py")):
            rel = src.relative_to(lib).as_posix()
            if "__pycache__" in rel or src.stem in PROTECTED:
                continue
            if compile:
                out = Path(tmp.name) / (rel[:-3] + ".mpy")
                try:
                    _compile(src, "lib/" + rel, out)
                except DeployError as exc:
                    raise OtaError(str(exc)) from None
                files.append(("lib/" + rel[:-3] + ".mpy", out.read_bytes()))
            else:
                files.append(("lib/" + rel, src.read_bytes()))
    finally:
        if tmp is not None:
            tmp.cleanup()
    for path, _ in files:
        if not valid_path(path):
            raise OtaError(f"{path}: file names under lib/ must be plain ASCII (letters, digits, _ - .)")
    return Package(version, files)


# ----- the server side -----

class LinkLost(Exception):
    pass


class Refused(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass
class DeviceUpdate:
    device: str
    state: str = "queued"      # queued|sending|committing|rebooting|trial|ok|rolled_back|failed|skipped
    sent: int = 0
    total: int = 0
    detail: str = ""
    from_version: str = ""
    version: str = ""          # what it runs at the end
    resumes: int = 0

    @property
    def finished(self) -> bool:
        return self.state in ("ok", "rolled_back", "failed", "skipped")

    def view(self) -> dict[str, Any]:
        return {"device": self.device, "state": self.state, "sent": self.sent, "total": self.total,
                "detail": self.detail, "from": self.from_version, "version": self.version,
                "resumes": self.resumes}


@dataclass
class Job:
    id: int
    package: Package
    user: str
    trial_s: int
    keep_going: bool
    devices: dict[str, DeviceUpdate] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    stopped: str = ""

    @property
    def done(self) -> bool:
        return all(d.finished for d in self.devices.values())

    def view(self) -> dict[str, Any]:
        return {"job": self.id, "version": self.package.version, "size": self.package.size,
                "files": len(self.package.files), "user": self.user, "trial_s": self.trial_s,
                "started": self.started, "done": self.done, "stopped": self.stopped,
                "devices": [d.view() for d in self.devices.values()]}


class OtaService:
    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task] = set()
        self.busy: set[str] = set()           # devices with an update in progress

    # --- jobs ---

    def start(self, package: Package, devices: list[str] | None, user: str, trial_s: int = DEFAULT_TRIAL_S,
              parallel: int = 4, keep_going: bool = False, force: bool = False) -> Job:
        hub = self.hub
        ward = hub.ward
        if devices is None:
            chosen = sorted(d for d in ward.terminals if d in hub.links)
            if not chosen:
                raise OtaError("no terminal is online")
        else:
            unknown = [d for d in devices if d not in ward.terminals]
            if unknown:
                raise OtaError(f"unknown terminal(s): {', '.join(unknown)}")
            chosen = list(dict.fromkeys(devices))
        busy = [d for d in chosen if d in self.busy]
        if busy:
            raise OtaError(f"an update is already running on {', '.join(busy)}")
        job = Job(next(self._ids), package, user, trial_s, keep_going)
        for d in chosen:
            job.devices[d] = DeviceUpdate(d, total=package.size, from_version=ward.terminals[d].firmware)
        self.jobs[job.id] = job
        self.busy.update(chosen)
        task = asyncio.create_task(self._run_job(job, max(1, parallel), force), name=f"ota job {job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run_job(self, job: Job, parallel: int, force: bool) -> None:
        sem = asyncio.Semaphore(parallel)

        async def one(du: DeviceUpdate) -> None:
            async with sem:
                if job.stopped:
                    self._finish(job, du, "skipped", job.stopped)
                    return
                try:
                    await self._update(job, du, force)
                except Exception as exc:  # a bug must not leave the job hanging
                    log.exception("update of %s failed", du.device)
                    self._finish(job, du, "failed", f"internal error: {exc}")
                finally:
                    self.busy.discard(du.device)
                if du.state in ("failed", "rolled_back") and not job.keep_going and not job.stopped:
                    job.stopped = f"stopped after {du.device} {du.state.replace('_', ' ')}"

        try:
            await asyncio.gather(*(one(du) for du in job.devices.values()))
        finally:
            for du in job.devices.values():
                self.busy.discard(du.device)
                if not du.finished:
                    self._finish(job, du, "failed", "server stopping")
            await self._record(job, None)

    def _publish(self, job: Job, du: DeviceUpdate) -> None:
        """An "ota" event on every console stream (as hub._publish does for ward changes)."""
        hub = self.hub
        hub.seq += 1
        payload = {"seq": hub.seq, "time": hub.clock.wall(), "job": job.id, "version": job.package.version,
                   "update": du.view()}
        for sub in list(hub.subscribers):
            try:
                sub.queue.put_nowait(("ota", payload))
            except asyncio.QueueFull:
                sub.dropped = True
                hub.subscribers.discard(sub)

    def _set(self, job: Job, du: DeviceUpdate, state: str, detail: str = "") -> None:
        du.state, du.detail = state, detail
        log.info("update %s of %s: %s %s", job.package.version, du.device, state, detail)
        self._publish(job, du)

    def _finish(self, job: Job, du: DeviceUpdate, state: str, detail: str) -> None:
        self._set(job, du, state, detail)
        task = asyncio.create_task(self._record(job, du))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _record(self, job: Job, du: DeviceUpdate | None) -> None:
        try:
            if du is None:
                await self.hub.record("ota_job_done", user=job.user, job=job.id, version=job.package.version,
                                      results=",".join(f"{d.device}:{d.state}" for d in job.devices.values()))
            else:
                await self.hub.record("ota_update", du.device, user=job.user, job=job.id,
                                      version=job.package.version, previous=du.from_version,
                                      result=du.state, detail=du.detail[:200])
        except Exception:
            log.exception("recording an update result failed")

    # --- one terminal ---

    def _link(self, device: str) -> Any:
        return self.hub.links.get(device)

    async def _wait_link(self, device: str, old: Any, timeout: float) -> Any:
        """The terminal's session once it is a live one other than `old` (None after timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            link = self._link(device)
            if link is not None and link is not old and getattr(link, "closed_because", None) is None:
                return link
            await asyncio.sleep(0.1)
        return None

    def _send(self, device: str, link: Any, cmd: int, arg: bytes) -> tuple[int, asyncio.Future]:
        if self._link(device) is not link:
            raise LinkLost("session ended")
        cmd_id = self.hub.next_cmd_id()
        fut = asyncio.get_running_loop().create_future()
        self.hub.result_waiters[cmd_id] = (device, fut)
        link.send(wardproto.COMMAND, {"cmd_id": cmd_id, "cmd": cmd, "arg": arg})
        return cmd_id, fut

    async def _answer(self, device: str, link: Any, cmd_id: int, fut: asyncio.Future,
                      timeout: float = ANSWER_S) -> str:
        deadline = time.monotonic() + timeout
        try:
            while True:
                done, _ = await asyncio.wait({fut}, timeout=0.25)
                if done:
                    ok, detail = fut.result()
                    if not ok:
                        raise Refused(detail)
                    return detail
                if self._link(device) is not link or getattr(link, "closed_because", None) is not None:
                    raise LinkLost("session ended")
                if time.monotonic() > deadline:
                    raise LinkLost(f"no answer within {timeout:g} s")
        finally:
            self.hub.result_waiters.pop(cmd_id, None)

    async def _command(self, device: str, link: Any, cmd: int, arg: bytes = b"") -> str:
        cmd_id, fut = self._send(device, link, cmd, arg)
        return await self._answer(device, link, cmd_id, fut)

    async def _transfer(self, job: Job, du: DeviceUpdate, link: Any) -> None:
        pkg = job.package
        dev = du.device
        manifest = pkg.manifest()
        begin = json.dumps({"v": pkg.version, "n": len(manifest), "size": pkg.size, "id": pkg.id,
                            "trial_s": job.trial_s}, separators=(",", ":")).encode()
        at = await self._command(dev, link, wardproto.CMD_OTA_BEGIN, begin)
        m = re.fullmatch(r"at (\d+) (\d+)", at)
        if not m:
            raise Refused(f"unexpected answer to BEGIN: {at}")
        start = int(m.group(1))
        du.sent = sum(f[1] for f in manifest[:start])
        for i in range(start, len(manifest)):
            path, size, sha = manifest[i]
            data = pkg.files[i][1]
            ans = await self._command(dev, link, wardproto.CMD_OTA_FILE,
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
                        cmd_id, fut = self._send(dev, link, wardproto.CMD_OTA_CHUNK,
                                                 struct.pack(">HI", i, off) + piece)
                        inflight.append((cmd_id, fut, len(piece)))
                        off += len(piece)
                    cmd_id, fut, n = inflight.pop(0)
                    await self._answer(dev, link, cmd_id, fut)
                    du.sent += n
                    if du.sent - last_pub >= max(pkg.size // 10, CHUNK):
                        last_pub = du.sent
                        self._publish(job, du)
            finally:
                for cmd_id, fut, _ in inflight:
                    # their RESULTs may still come: swallowed (not recorded) for a while
                    fut.cancel()
                    asyncio.get_running_loop().call_later(30, self.hub.result_waiters.pop, cmd_id, None)
        self._publish(job, du)

    async def _update(self, job: Job, du: DeviceUpdate, force: bool) -> None:
        dev = du.device
        pkg = job.package
        hub = self.hub
        link = self._link(dev)
        if link is None:
            self._finish(job, du, "failed", "not connected")
            return
        terminal = hub.ward.terminals[dev]
        du.from_version = terminal.firmware
        if terminal.firmware == pkg.version and not force:
            du.version = terminal.firmware
            self._finish(job, du, "skipped", f"already runs {pkg.version}")
            return
        self._set(job, du, "sending", f"{len(pkg.files)} file(s), {pkg.size} bytes")
        while True:
            try:
                await self._transfer(job, du, link)
                break
            except Refused as exc:
                await self._abort(dev, link)
                self._finish(job, du, "failed", f"refused by the terminal: {exc.detail}")
                return
            except LinkLost as exc:
                du.resumes += 1
                if du.resumes > MAX_RESUMES:
                    self._finish(job, du, "failed", f"session lost {du.resumes} times: {exc}")
                    return
                self._set(job, du, "sending", f"session lost ({exc}): waiting to resume")
                new = await self._wait_link(dev, link, RECONNECT_S)
                if new is None:
                    self._finish(job, du, "failed", f"session lost during the transfer and not back within {RECONNECT_S:g} s")
                    return
                link = new
        self._set(job, du, "committing", "all files received and verified")
        deadline = time.monotonic() + BUSY_RETRY_S
        while True:
            try:
                await self._command(dev, link, wardproto.CMD_OTA_COMMIT)
                break
            except Refused as exc:
                if exc.detail.startswith("busy") and time.monotonic() < deadline:
                    self._set(job, du, "committing", f"waiting: {exc.detail}")
                    await asyncio.sleep(1.0)
                    continue
                await self._abort(dev, link)
                self._finish(job, du, "failed", f"commit refused: {exc.detail}")
                return
            except LinkLost:
                break        # it may have committed and rebooted before the RESULT left: ask it later
        self._set(job, du, "rebooting", "installing")
        await self._verify(job, du, link)

    async def _verify(self, job: Job, du: DeviceUpdate, old: Any) -> None:
        dev = du.device
        pkg = job.package
        link = await self._wait_link(dev, old, RECONNECT_S)
        if link is None:
            self._finish(job, du, "failed", f"not back online within {RECONNECT_S:g} s of the reboot")
            return
        deadline = time.monotonic() + job.trial_s + RECONNECT_S
        while True:
            try:
                st = json.loads(await self._command(dev, link, wardproto.CMD_OTA_STATUS))
            except LinkLost:
                new = await self._wait_link(dev, link, RECONNECT_S)
                if new is None:
                    self._finish(job, du, "failed", "went offline during its trial and did not come back")
                    return
                link = new
                continue
            except (Refused, ValueError) as exc:
                self._finish(job, du, "failed", f"no update status: {exc}")
                return
            du.version = st.get("run", "")
            s = st.get("s")
            if s == "confirmed" and st.get("v") == pkg.version and du.version == pkg.version:
                self._finish(job, du, "ok", f"runs {pkg.version}")
                return
            if s == "rolled_back" and st.get("v") == pkg.version:
                self._finish(job, du, "rolled_back", f"back on {du.version}: {st.get('why', '')}")
                return
            if s not in ("trial", "pending") or time.monotonic() > deadline:
                self._finish(job, du, "failed", f"unexpected update state {s!r} (runs {du.version})")
                return
            if du.state != "trial":
                self._set(job, du, "trial", f"runs {du.version}, waiting for its confirmation")
            await asyncio.sleep(0.5)

    async def _abort(self, device: str, link: Any) -> None:
        try:
            await self._command(device, link, wardproto.CMD_OTA_ABORT)
        except (LinkLost, Refused):
            pass

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)


# ----- HTTP API -----

def add_ota_routes(app: Any) -> None:
    """POST /api/ota/updates   {"package": {"version", "files": [[path, base64]...]},
                                "devices": [...] | null (every online terminal), "trial_s": 60,
                                "parallel": 4, "keep_going": false, "force": false}
                               -> 202 {job view}
    GET  /api/ota/updates      [job views]
    GET  /api/ota/updates/{id} job view: {"job", "version", "done", "stopped", "devices": [
                               {"device", "state", "sent", "total", "detail", "from", "version"}]}"""
    from aiohttp import web

    from .api import HUB, _error, _user

    key = web.AppKey("ota", OtaService)

    def service(request: web.Request) -> OtaService:
        if key not in request.app:
            raise RuntimeError("OTA service missing")
        return request.app[key]

    async def on_cleanup(app: web.Application) -> None:
        await app[key].stop()

    async def create(request: web.Request) -> web.Response:
        svc = service(request)
        raw = bytearray()
        async for piece in request.content.iter_chunked(65536):
            raw += piece
            if len(raw) > MAX_UPLOAD:
                return _error(413, f"a package upload is limited to {MAX_UPLOAD} bytes")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return _error(400, "the request body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "the request body must be a JSON object")
        devices = body.get("devices")
        trial_s = body.get("trial_s", DEFAULT_TRIAL_S)
        parallel = body.get("parallel", 4)
        if devices is not None and (not isinstance(devices, list) or not all(isinstance(d, str) for d in devices) or not devices):
            return _error(400, "devices must be a non-empty list of device ids, or null for every online terminal")
        if isinstance(trial_s, bool) or not isinstance(trial_s, int) or not 5 <= trial_s <= 600:
            return _error(400, "trial_s must be a whole number of seconds from 5 to 600")
        if isinstance(parallel, bool) or not isinstance(parallel, int) or not 1 <= parallel <= 32:
            return _error(400, "parallel must be 1-32")
        try:
            package = Package.from_json(body.get("package"))
            job = svc.start(package, devices, _user(request), trial_s=trial_s, parallel=parallel,
                            keep_going=bool(body.get("keep_going")), force=bool(body.get("force")))
        except OtaError as exc:
            return _error(409 if "already running" in str(exc) or "online" in str(exc) else 400, str(exc))
        await request.app[HUB].record("ota_job_started", user=_user(request), job=job.id, version=package.version,
                                      devices=",".join(job.devices), size=package.size)
        return web.json_response(job.view(), status=202)

    async def list_jobs(request: web.Request) -> web.Response:
        return web.json_response([j.view() for j in service(request).jobs.values()])

    async def get_job(request: web.Request) -> web.Response:
        try:
            job = service(request).jobs[int(request.match_info["job"])]
        except (KeyError, ValueError):
            return _error(404, "no such update job")
        return web.json_response(job.view())

    app[key] = OtaService(app[HUB])
    app.on_cleanup.append(on_cleanup)
    app.router.add_post("/api/ota/updates", create)
    app.router.add_get("/api/ota/updates", list_jobs)
    app.router.add_get("/api/ota/updates/{job}", get_job)


# ----- `wardcall update` -----

STATE_WORDS = {"ok": "ok", "rolled_back": "ROLLED BACK", "failed": "FAILED", "skipped": "skipped"}


class UpdateClient:
    """The server's update API over HTTP, logged in as a console user (urllib, no event loop)."""

    def __init__(self, url: str, user: str | None, password: str | None) -> None:
        import http.cookiejar
        import urllib.request
        self.url = url.rstrip("/")
        self.user, self.password = user, password
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def _request(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        import urllib.error
        import urllib.request
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with self.opener.open(req, timeout=timeout) as reply:
                return json.loads(reply.read().decode())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read().decode()).get("error", "")
            except (ValueError, AttributeError):
                message = ""
            raise OtaError(f"{method} {path}: HTTP {exc.code} {message}".strip()) from None
        except (urllib.error.URLError, OSError) as exc:
            raise OtaError(f"the host at {self.url} is not reachable ({getattr(exc, 'reason', exc)}); "
                           "is `wardcall serve` running?") from None

    def login(self) -> None:
        if not self.user or self.password is None:
            raise OtaError("the update runs through the host's API: pass --host-user USER (or set "
                           "$WARDCALL_HOST_USER) and set $WARDCALL_HOST_PASSWORD")
        self._request("POST", "/api/login", {"user": self.user, "password": self.password})

    def start(self, package: Package, devices: list[str] | None, trial_s: int, parallel: int,
              keep_going: bool, force: bool) -> dict[str, Any]:
        return self._request("POST", "/api/ota/updates", {
            "package": package.to_json(), "devices": devices, "trial_s": trial_s, "parallel": parallel,
            "keep_going": keep_going, "force": force}, timeout=120)

    def job(self, job_id: int) -> dict[str, Any]:
        return self._request("GET", f"/api/ota/updates/{job_id}")


def format_table(job: dict[str, Any]) -> str:
    rows = [("device", "result", "from", "now", "detail")]
    for d in job["devices"]:
        rows.append((d["device"], STATE_WORDS.get(d["state"], d["state"]), d["from"] or "?",
                     d["version"] or "?", d["detail"]))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows]
    return "\n".join(lines) + "\n"


def run_update(url: str, user: str | None, password: str | None, package: Package, devices: list[str] | None,
               trial_s: int = DEFAULT_TRIAL_S, parallel: int = 4, keep_going: bool = False, force: bool = False,
               timeout: float = 900, out: Any = None, poll_s: float = 0.5) -> dict[str, Any]:
    """Start the update at the server and follow it, printing progress lines; returns the job."""
    import sys
    out = out or sys.stdout
    client = UpdateClient(url, user, password)
    client.login()
    job = client.start(package, devices, trial_s, parallel, keep_going, force)
    print(f"update {job['job']}: firmware {package.version} ({len(package.files)} file(s), {package.size} bytes) "
          f"to {', '.join(d['device'] for d in job['devices'])}", file=out)
    seen: dict[str, tuple[str, str, int]] = {}
    deadline = time.monotonic() + timeout
    while True:
        for d in job["devices"]:
            pct = 100 * d["sent"] // d["total"] if d["total"] else 0
            key = (d["state"], d["detail"], pct // 25 if d["state"] == "sending" else 0)
            if seen.get(d["device"]) != key:
                seen[d["device"]] = key
                progress = f" {pct}%" if d["state"] == "sending" else ""
                print(f"  {d['device']}: {d['state']}{progress} {d['detail']}".rstrip(), file=out)
                out.flush()
        if job["done"]:
            break
        if time.monotonic() > deadline:
            raise OtaError(f"update {job['job']} still running after {timeout:g} s (see GET /api/ota/updates/{job['job']})")
        time.sleep(poll_s)
        job = client.job(job["job"])
    if job.get("stopped"):
        print(f"update {job['job']}: {job['stopped']} (use --keep-going to go on after a failure)", file=out)
    print(format_table(job), end="", file=out)
    return job


def cmd_update(args: Any) -> int:
    import os
    import sys

    from .config import load_config
    from .deploy.provisioning import host_url
    try:
        ward = load_config(Path(args.config))
        if not args.all and not args.device:
            raise OtaError("name the terminals with --device ID (repeatable) or pass --all")
        package = build_package(args.firmware, compile=args.mpy)
        devices = None if args.all else args.device
        job = run_update(args.host_url or host_url(ward), args.host_user, os.environ.get("WARDCALL_HOST_PASSWORD"),
                         package, devices, trial_s=args.trial_s, parallel=args.parallel,
                         keep_going=args.keep_going, force=args.force, timeout=args.timeout)
    except OtaError as exc:
        print(f"wardcall update: {exc}", file=sys.stderr)
        return 2
    return 0 if all(d["state"] in ("ok", "skipped") for d in job["devices"]) else 1


def register(sub: Any) -> None:
    import os
    p = sub.add_parser("update", help="update the firmware of online terminals over the air")
    p.add_argument("--config", required=True, help="the ward TOML file")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--device", action="append", help="a terminal to update (repeatable)")
    who.add_argument("--all", action="store_true", help="every terminal online now")
    p.add_argument("--firmware", default=None, help="firmware folder (default: this checkout's firmware/)")
    p.add_argument("--mpy", action="store_true",
                   help="ship lib/*.mpy compiled by mpy-cross (only if the boards' MicroPython takes this .mpy version)")
    p.add_argument("--trial-s", type=int, default=DEFAULT_TRIAL_S,
                   help="the new firmware must reach the host within this many seconds or it rolls back (5-600)")
    p.add_argument("--parallel", type=int, default=4, help="terminals updated at the same time")
    p.add_argument("--keep-going", action="store_true", help="go on after a terminal fails or rolls back")
    p.add_argument("--force", action="store_true", help="also terminals that already run this version")
    p.add_argument("--timeout", type=float, default=1800.0, help="give up following the job after this many seconds")
    p.add_argument("--host-url", default=None, help="the host's API (default: from the ward TOML)")
    p.add_argument("--host-user", default=os.environ.get("WARDCALL_HOST_USER"),
                   help="console user (password in $WARDCALL_HOST_PASSWORD)")
    p.set_defaults(func=cmd_update)
