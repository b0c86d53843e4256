"""`wardcall deploy`: one board, from MicroPython at the REPL to a terminal online at the host.

Steps (each failure is a DeployError naming the port and the fix):
 1. device config: the device's config.json from the host's provisioning (unknown id: stop here),
    and the ward's over-the-air update public key (otakey.json: the terminal accepts only updates
    signed with the ward's private key; without it the terminal refuses every update)
 2. probe (one `mpremote exec`): MicroPython version, .mpy version, free flash, sha256 of every
    file we may write, whether the maintenance flag is set
 3. checks: supported MicroPython, .mpy version that mpy-cross emits, enough free flash
 4. stage: compile firmware/lib and boards/<board>/board.py with mpy-cross (boot.py, main.py as .py)
 5. if anything differs: create the maintenance flag and reset (the app and its watchdog stay
    off), then in one mpremote run: mkdir, remove stale twins (x.py next to x.mpy), write each
    changed file (base64, up to 3 KiB per `exec`; board.write_scripts), re-hash; then remove the
    flag and reset. If nothing differs: just reset.
 6. wait until the host's /api/state lists the device online (bounded)
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .. import checkout
from . import build
from .board import Board, chain, parse_probe, prepare_script, probe_script, write_scripts
from .errors import DeployError
from .online import wait_online

# The firmware's maintenance flag: boot.py skips the watchdog and the app while it exists
# (docs/FIRMWARE.md, firmware/boot.py).
MAINTENANCE_FLAG = "/maintenance"
CONFIG_PATH = "/config.json"
OTA_KEY_PATH = "/otakey.json"    # otaproto.KEY_FILE: never writable over the air
MIN_MICROPYTHON = (1, 23, 0)   # first release with .mpy v6.3; asyncio as the firmware uses it
DEFAULT_MIN_FREE = 16 * 1024   # flash that must stay free after the copy (outbox, boot count)

Log = Callable[[str], None]
DeviceConfig = Callable[[str], dict[str, Any]]    # device -> its config.json; DeployError if unknown


@dataclass(frozen=True)
class DeployRequest:
    """One board to deploy: what (the device, its config, the update key, the firmware), where
    (the port, the host that must see it online) and how (compile or not, the checks, the limits).
    cli.py makes one per board from the command line."""
    port: str                           # /dev/ttyUSB0, or socket://127.0.0.1:PORT (emulated board)
    device: str                         # the device id, as provisioned
    device_config: DeviceConfig         # ward_bridge.device_config for the ward
    board: str | None = None            # boards/<board>; None: detected from the board
    # the text of the board's update key file (signing.board_key_text); None: none to install
    # (the terminal will refuse over-the-air updates; said in Result.warnings)
    ota_key: str | None = None
    compile: bool = True                # .mpy with mpy-cross; False: copy the .py sources
    firmware_dir: Path | None = None    # default: this checkout's firmware/
    boards_dir: Path | None = None      # default: this checkout's boards/
    expect_mpy: int | None = None       # the .mpy major version the board must load; None: mpy-cross's
    min_version: tuple[int, ...] = MIN_MICROPYTHON
    min_free: int = DEFAULT_MIN_FREE    # bytes of flash that must stay free after the copy
    timeout: float = 60.0               # each mpremote step
    wait: bool = True                   # wait until the host lists the terminal online
    host_url: str | None = None         # the host's HTTP API; None: no online check
    host_user: str | None = None        # a console user, to read the host's state
    host_password: str | None = field(default=None, repr=False)
    online_timeout: float = 30.0
    maintenance_flag: str = MAINTENANCE_FLAG


@dataclass
class Result:
    port: str
    device: str
    ok: bool = False
    copied: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    board: str = ""
    version: str = ""
    seconds: float = 0.0
    online: bool = False
    error: DeployError | None = None
    steps: list[str] = field(default_factory=list)
    copy_started: bool = False
    flag_cleared: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        if self.ok:
            n = len(self.copied)
            return ("%d file%s copied" % (n, "" if n == 1 else "s")) if n else "up to date"
        return self.error.short if self.error else "failed"


@dataclass(frozen=True)
class StagedFile:
    """A file to be on the board: where it is here, its sha256 and size."""
    path: str
    sha256: str
    size: int

    @classmethod
    def of(cls, path: str | Path) -> StagedFile:
        return cls(str(path), build.sha256_file(path), os.path.getsize(path))


def detect_board(info: Mapping[str, Any]) -> str | None:
    """Board folder name from sys.implementation._machine / sys.platform."""
    machine = (info.get("machine") or "").lower().replace("-", "")
    if info.get("platform") == "linux" or "emulat" in machine or "unix" in machine:
        return "emulator"
    for name in ("esp32c3", "esp32s3"):
        if name in machine:
            return name
    if "esp32" in machine or info.get("platform") == "esp32":
        return "esp32"
    return None


def check_board(info: Mapping[str, Any], port: str, expect_mpy: int | None = None,
                min_version: tuple[int, ...] = MIN_MICROPYTHON, compile: bool = True) -> str:
    """Raise a DeployError if the board cannot run this firmware."""
    if info.get("name") != "micropython":
        raise DeployError(
            "board on %s runs %s, not MicroPython" % (port, info.get("name")),
            code="wrong-version", port=port,
            fix="flash MicroPython with `wardcall flash --port %s --board ... --firmware ...`" % port)
    version = tuple(info.get("version") or (0, 0, 0))
    vtext = ".".join(str(v) for v in version)
    if version < tuple(min_version):
        raise DeployError(
            "board on %s runs MicroPython %s; wardcall needs %s or newer"
            % (port, vtext, ".".join(str(v) for v in min_version)),
            code="wrong-version", port=port,
            fix="flash a current MicroPython with `wardcall flash --port %s ...`" % port)
    if compile:
        mpy = info.get("mpy")
        if mpy is None:
            raise DeployError(
                "board on %s does not report its .mpy version (MicroPython %s)" % (port, vtext),
                code="wrong-version", port=port,
                fix="flash a current MicroPython, or deploy sources with --no-compile")
        major, _sub, _arch = build.decode_mpy(mpy)
        want = expect_mpy if expect_mpy is not None else build.mpy_cross_version()[0]
        if major != want:
            raise DeployError(
                "board on %s loads .mpy v%d files (MicroPython %s) but mpy-cross makes v%d"
                % (port, major, vtext, want),
                code="wrong-version", port=port,
                fix="flash MicroPython %s or newer with `wardcall flash`, or deploy sources with "
                "--no-compile" % ".".join(str(v) for v in min_version))
    return vtext


def _blocks(size: int, block: int) -> int:
    return -(-size // block) * block if block else size


def plan_changes(files: Mapping[str, StagedFile],
                 remote_hashes: Mapping[str, str | None]) -> tuple[list[str], int, list[str]]:
    """Which files to copy, how many are unchanged, which twins to remove (x.py beside x.mpy)."""
    copy: list[str] = []
    remove: list[str] = []
    same = 0
    for remote, local in sorted(files.items()):
        if remote_hashes.get(remote) == local.sha256:
            same += 1
        else:
            copy.append(remote)
        t = build.twin(remote)
        if t and t not in files and remote_hashes.get(t) not in (None, "dir"):
            remove.append(t)
    return copy, same, remove


def _flag_on(flag: str) -> str:
    return "open(%r, 'w').close()" % flag


def _flag_off(flag: str) -> str:
    # with the flag, an over-the-air update's state goes (docs/DEPLOY.md section 10): a deploy over
    # USB wins, a boot after it must not roll back to files the OTA update had set aside
    return ("import os\nfor p in (%r, '/.ota/state.json'):\n try:\n  os.remove(p)\n except OSError:\n  pass"
            % flag)


@dataclass
class _Running:
    """A deploy under way: its request, the board, what it has done so far (the result)."""
    request: DeployRequest
    board: Board
    result: Result
    log: Log
    started: float

    def step(self, msg: str) -> None:
        self.result.steps.append(msg)
        self.log("[%s %s] %s" % (self.request.device, self.request.port, msg))


def deploy(request: DeployRequest, log: Log | None = None) -> Result:
    """Deploy to one board. Returns a Result; raises DeployError on failure (fleet catches it
    per board). log(line): each step, and each mpremote command."""
    say: Log = log or (lambda msg: None)
    port, device = request.port, request.device
    run = _Running(request, Board(port, timeout=request.timeout, log=lambda m: say("[%s %s]   %s" % (device, port, m))),
                   Result(port=port, device=device), say, time.monotonic())

    # 1. the device's config (unknown device: nothing touched yet)
    config = request.device_config(device)
    config_bytes = (json.dumps(config, sort_keys=True, indent=1) + "\n").encode("utf-8")
    if request.ota_key is None:
        run.result.warnings.append("no over-the-air update key installed on %s: it will refuse every update "
                                   "(make the ward's key with `wardcall update keygen`, then deploy again)" % device)

    # 2. maintenance mode first: a running app has a watchdog that would reset the board under
    #    mpremote (measured on the emulator: TG0WDT_SYS_RESET during the probe). Short step, retried.
    run.step("maintenance mode on, reset")
    # a missing port or nothing listening fails at once; busy or a silent REPL may pass (the
    # previous program still closing the port, the app being interrupted), so those are retried
    run.board.run(chain(["exec", _flag_on(request.maintenance_flag)], ["reset"]), retries=3,
                  retry_on=("busy", "no-repl"))
    try:
        return _deploy_in_maintenance(run, config_bytes)
    except DeployError:
        if not run.result.copy_started and not run.result.flag_cleared:
            # nothing written yet (checks failed): leave the board as it was, app running.
            # After a copy started the flag stays: the board keeps booting into maintenance mode
            # until a deploy completes.
            try:
                run.board.run(chain(["exec", _flag_off(request.maintenance_flag)], ["reset"]), retries=1)
            except DeployError:
                pass
        raise


def _deploy_in_maintenance(run: _Running, config_bytes: bytes) -> Result:
    """Steps 2 to 6, with the board in maintenance mode."""
    request, result = run.request, run.result
    info = _probe(run)
    board = _check(run, info)
    with tempfile.TemporaryDirectory(prefix="wardcall-deploy-", ignore_cleanup_errors=True) as tmpdir:
        files = _staged_files(request, board, config_bytes, Path(tmpdir))
        copy, same, remove = plan_changes(files, info.get("hashes") or {})
        result.unchanged = same
        if copy or remove:
            _copy(run, info, files, copy, remove)
        else:
            run.step("everything up to date (%d files); maintenance mode off, reset" % same)
            run.board.run(chain(["exec", _flag_off(request.maintenance_flag)], ["reset"]), retries=2)
            result.flag_cleared = True

    # 6. online at the host
    if request.wait and request.host_url:
        run.step("waiting for %s online at %s" % (request.device, request.host_url))
        wait_online(request.host_url, request.device, timeout=request.online_timeout, port=request.port,
                    user=request.host_user, password=request.host_password)
        result.online = True
        run.step("online")
    result.ok = True
    result.seconds = time.monotonic() - run.started
    return result


def _probe(run: _Running) -> dict[str, Any]:
    """2. What the board runs, its free flash, the hashes of every file deploy may write."""
    request = run.request
    run.step("probing the board")
    names = ["/boot.py", "/main.py", CONFIG_PATH, OTA_KEY_PATH]
    fw = request.firmware_dir or checkout.FIRMWARE
    for src in sorted((fw / "lib").rglob("*.py")) if (fw / "lib").is_dir() else []:
        rel = src.relative_to(fw / "lib").as_posix()
        if "__pycache__" not in rel:
            names += ["/lib/" + rel, "/lib/" + rel[:-3] + ".mpy"]
    names += ["/lib/board.py", "/lib/board.mpy", "/boot.mpy", "/main.mpy"]
    return run.board.probe(sorted(set(names)), request.maintenance_flag, retries=3)


def _check(run: _Running, info: Mapping[str, Any]) -> str:
    """3. The board can run this firmware; which board it is."""
    request, result = run.request, run.result
    result.version = check_board(info, request.port, expect_mpy=request.expect_mpy,
                                 min_version=request.min_version, compile=request.compile)
    board = request.board or detect_board(info)
    if not board:
        raise DeployError("cannot tell which board is on %s (%r)" % (request.port, info.get("machine")),
                          code="unknown-board", port=request.port,
                          fix="pass --board esp32, esp32c3 or esp32s3")
    result.board = board
    run.step("MicroPython %s, .mpy %s, board %s, %s bytes free"
             % (result.version, info.get("mpy"), board, info.get("free")))
    return board


def _staged_files(request: DeployRequest, board: str, config_bytes: bytes, tmpdir: Path) -> dict[str, StagedFile]:
    """4. Everything that must be on the board: the built firmware, config.json and otakey.json
    (written to tmpdir, mode 0600: config.json holds the device's key)."""
    staged = build.stage(board, compile=request.compile, firmware_dir=request.firmware_dir,
                         boards_dir=request.boards_dir)
    files = {remote: StagedFile.of(local) for remote, local in staged.items()}
    extra = {CONFIG_PATH: config_bytes}
    if request.ota_key is not None:
        extra[OTA_KEY_PATH] = request.ota_key.encode("utf-8")
    for remote, data in extra.items():
        local = tmpdir / remote.lstrip("/")
        with open(local, "wb") as f:
            f.write(data)
        os.chmod(local, 0o600)
        files[remote] = StagedFile(str(local), hashlib.sha256(data).hexdigest(), len(data))
    return files


def _copy(run: _Running, info: Mapping[str, Any], files: Mapping[str, StagedFile], copy: list[str],
          remove: list[str]) -> None:
    """5. Copy what differs and remove the twins, verify by hash, then maintenance off and reset."""
    request, result, port = run.request, run.result, run.request.port
    # free flash: new files need their size (in blocks); replaced ones give theirs back
    # only after the write, so count the new size in full.
    block = info.get("block") or 4096
    need = sum(_blocks(files[r].size, block) for r in copy) + request.min_free
    free = info.get("free")
    if free is not None and free < need:
        raise DeployError(
            "not enough flash on %s: %d bytes free, the deploy needs %d (%d to copy + %d "
            "to keep free)" % (port, free, need, need - request.min_free, request.min_free),
            code="no-space", port=port,
            fix="remove old files (`mpremote connect %s fs ls`, `fs rm`), or erase and "
            "re-flash the board (`wardcall flash`), then deploy again" % port)
    run.step("%d to copy, %d unchanged, %d to remove" % (len(copy), result.unchanged, len(remove)))

    # 5b. one mpremote run (more only past ~96 KB of scripts): folders, twins out, files
    #     in (base64 `exec`s, see board.write_scripts), hashes back
    batches = write_scripts([(r, files[r].path) for r in copy]) or [[]]
    batches[0].insert(0, prepare_script(build.remote_dirs(copy), remove))
    batches[-1].append(probe_script(sorted(set(list(files) + remove)), request.maintenance_flag))
    run.step("copying " + (", ".join(copy)))
    result.copy_started = True
    out = ""
    for scripts in batches:
        out = run.board.run(chain(*(["exec", sc] for sc in scripts)), retries=5,
                            timeout=max(request.timeout, 30 + sum(map(len, scripts)) // 2000))
    after = parse_probe(out)
    if after is None:
        raise DeployError(
            "board on %s did not answer the check after the copy (got %r)"
            % (port, out[-200:]), code="verify", port=port,
            fix="the board stays in maintenance mode; run the deploy again")
    bad = [r for r in files if after["hashes"].get(r) != files[r].sha256]
    left = [r for r in remove if after["hashes"].get(r) is not None]
    if bad or left:
        raise DeployError(
            "copy to %s did not verify: %s" % (port, ", ".join(bad + left)),
            code="verify", port=port,
            fix="the board stays in maintenance mode; run the deploy again, and if it "
            "fails again check the USB cable and `wardcall monitor --port %s`" % port)
    result.copied, result.removed = copy, remove
    # 5c. maintenance off, reset into the app
    run.step("maintenance mode off, reset")
    run.board.run(chain(["exec", _flag_off(request.maintenance_flag)], ["reset"]), retries=2)
    result.flag_cleared = True
