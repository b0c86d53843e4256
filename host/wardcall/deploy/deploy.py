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
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field

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


@dataclass
class Result:
    port: str
    device: str
    ok: bool = False
    copied: list = field(default_factory=list)
    removed: list = field(default_factory=list)
    unchanged: int = 0
    board: str = ""
    version: str = ""
    seconds: float = 0.0
    online: bool = False
    error: DeployError = None
    steps: list = field(default_factory=list)
    copy_started: bool = False
    flag_cleared: bool = False
    warnings: list = field(default_factory=list)

    @property
    def reason(self):
        if self.ok:
            n = len(self.copied)
            return ("%d file%s copied" % (n, "" if n == 1 else "s")) if n else "up to date"
        return self.error.short if self.error else "failed"


def detect_board(info):
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


def check_board(info, port, expect_mpy=None, min_version=MIN_MICROPYTHON, compile=True):
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


def _blocks(size, block):
    return -(-size // block) * block if block else size


def plan_changes(files, remote_hashes):
    """Which files to copy and which twins to remove. files: {remote: bytes-or-path}."""
    copy, same, remove = [], 0, []
    for remote, local in sorted(files.items()):
        want = local["sha256"]
        if remote_hashes.get(remote) == want:
            same += 1
        else:
            copy.append(remote)
        t = build.twin(remote)
        if t and t not in files and remote_hashes.get(t) not in (None, "dir"):
            remove.append(t)
    return copy, same, remove


def deploy(port, device, device_config, *, board=None, compile=True, host_url=None,
           online_timeout=30.0, expect_mpy=None, min_free=DEFAULT_MIN_FREE,
           min_version=MIN_MICROPYTHON, log=None, timeout=60, wait=True, firmware_dir=None,
           host_user=None, host_password=None,
           boards_dir=None, maintenance_flag=MAINTENANCE_FLAG, ota_key=None):
    """Deploy to one board. device_config(device) -> dict for config.json (raises if unknown).
    ota_key: the text of the board's update key file (signing.board_key_text), None: none to
    install (the terminal will refuse over-the-air updates; said in Result.warnings).

    Returns a Result; raises DeployError on failure (fleet catches it per board).
    """
    log = log or (lambda msg: None)
    started = time.monotonic()
    result = Result(port=port, device=device)

    def step(msg):
        result.steps.append(msg)
        log("[%s %s] %s" % (device, port, msg))

    # 1. the device's config (unknown device: nothing touched yet)
    config = device_config(device)
    config_bytes = (json.dumps(config, sort_keys=True, indent=1) + "\n").encode("utf-8")
    if ota_key is None:
        result.warnings.append("no over-the-air update key installed on %s: it will refuse every update "
                               "(make the ward's key with `wardcall update keygen`, then deploy again)" % device)

    b = Board(port, timeout=timeout, log=lambda m: log("[%s %s]   %s" % (device, port, m)))
    flag_on = "open(%r, 'w').close()" % maintenance_flag
    # with the flag, an over-the-air update's state goes (docs/DEPLOY.md section 10): a deploy over
    # USB wins, a boot after it must not roll back to files the OTA update had set aside
    flag_off = ("import os\nfor p in (%r, '/.ota/state.json'):\n try:\n  os.remove(p)\n except OSError:\n  pass"
                % maintenance_flag)

    # 2. maintenance mode first: a running app has a watchdog that would reset the board under
    #    mpremote (measured on the emulator: TG0WDT_SYS_RESET during the probe). Short step, retried.
    step("maintenance mode on, reset")
    # a missing port or nothing listening fails at once; busy or a silent REPL may pass (the
    # previous program still closing the port, the app being interrupted), so those are retried
    b.run(chain(["exec", flag_on], ["reset"]), retries=3, retry_on=("busy", "no-repl"))
    try:
        return _deploy_in_maintenance(b, result, step, port, device, config_bytes, board, compile,
                                      host_url, online_timeout, expect_mpy, min_free, min_version,
                                      timeout, wait, firmware_dir, boards_dir, maintenance_flag,
                                      flag_off, host_user, host_password, started, ota_key)
    except DeployError:
        if not result.copy_started and not result.flag_cleared:
            # nothing written yet (checks failed): leave the board as it was, app running.
            # After a copy started the flag stays: the board keeps booting into maintenance mode
            # until a deploy completes.
            try:
                b.run(chain(["exec", flag_off], ["reset"]), retries=1)
            except DeployError:
                pass
        raise


def _deploy_in_maintenance(b, result, step, port, device, config_bytes, board, compile, host_url,
                           online_timeout, expect_mpy, min_free, min_version, timeout, wait,
                           firmware_dir, boards_dir, maintenance_flag, flag_off, host_user,
                           host_password, started, ota_key):
    step("probing the board")
    names = ["/boot.py", "/main.py", CONFIG_PATH, OTA_KEY_PATH]
    fw = firmware_dir or build.paths.FIRMWARE
    for src in sorted((fw / "lib").rglob("*.py")) if (fw / "lib").is_dir() else []:
        rel = src.relative_to(fw / "lib").as_posix()
        if "__pycache__" not in rel:
            names += ["/lib/" + rel, "/lib/" + rel[:-3] + ".mpy"]
    names += ["/lib/board.py", "/lib/board.mpy", "/boot.mpy", "/main.mpy"]
    info = b.probe(sorted(set(names)), maintenance_flag, retries=3)

    # 3. checks
    result.version = check_board(info, port, expect_mpy=expect_mpy, min_version=min_version,
                                 compile=compile)
    board = board or detect_board(info)
    if not board:
        raise DeployError("cannot tell which board is on %s (%r)" % (port, info.get("machine")),
                          code="unknown-board", port=port,
                          fix="pass --board esp32, esp32c3 or esp32s3")
    result.board = board
    step("MicroPython %s, .mpy %s, board %s, %s bytes free"
         % (result.version, info.get("mpy"), board, info.get("free")))

    # 4. stage and compare
    staged = build.stage(board, compile=compile, firmware_dir=firmware_dir, boards_dir=boards_dir)
    files = {}
    for remote, local in staged.items():
        files[remote] = {"path": str(local), "sha256": build.sha256_file(local),
                         "size": os.path.getsize(local)}
    tmpdir = tempfile.mkdtemp(prefix="wardcall-deploy-")
    cfg_file = os.path.join(tmpdir, "config.json")
    with open(cfg_file, "wb") as f:
        f.write(config_bytes)
    os.chmod(cfg_file, 0o600)
    files[CONFIG_PATH] = {"path": cfg_file, "sha256": hashlib.sha256(config_bytes).hexdigest(),
                          "size": len(config_bytes)}
    if ota_key is not None:
        key_bytes = ota_key.encode("utf-8")
        key_file = os.path.join(tmpdir, "otakey.json")
        with open(key_file, "wb") as f:
            f.write(key_bytes)
        files[OTA_KEY_PATH] = {"path": key_file, "sha256": hashlib.sha256(key_bytes).hexdigest(),
                               "size": len(key_bytes)}
    hashes = info.get("hashes") or {}
    copy, same, remove = plan_changes(files, hashes)
    result.unchanged = same
    try:
        if copy or remove:
            # free flash: new files need their size (in blocks); replaced ones give theirs back
            # only after the write, so count the new size in full.
            block = info.get("block") or 4096
            need = sum(_blocks(files[r]["size"], block) for r in copy) + min_free
            free = info.get("free")
            if free is not None and free < need:
                raise DeployError(
                    "not enough flash on %s: %d bytes free, the deploy needs %d (%d to copy + %d "
                    "to keep free)" % (port, free, need, need - min_free, min_free),
                    code="no-space", port=port,
                    fix="remove old files (`mpremote connect %s fs ls`, `fs rm`), or erase and "
                    "re-flash the board (`wardcall flash`), then deploy again" % port)
            step("%d to copy, %d unchanged, %d to remove" % (len(copy), same, len(remove)))

            # 5b. one mpremote run (more only past ~96 KB of scripts): folders, twins out, files
            #     in (base64 `exec`s, see board.write_scripts), hashes back
            batches = write_scripts([(r, files[r]["path"]) for r in copy]) or [[]]
            batches[0].insert(0, prepare_script(build.remote_dirs(copy), remove))
            batches[-1].append(probe_script(sorted(set(list(files) + remove)), maintenance_flag))
            step("copying " + (", ".join(copy)))
            result.copy_started = True
            for scripts in batches:
                out = b.run(chain(*(["exec", sc] for sc in scripts)), retries=5,
                            timeout=max(timeout, 30 + sum(map(len, scripts)) // 2000))
            after = parse_probe(out)
            if after is None:
                raise DeployError(
                    "board on %s did not answer the check after the copy (got %r)"
                    % (port, out[-200:]), code="verify", port=port,
                    fix="the board stays in maintenance mode; run the deploy again")
            bad = [r for r in files if after["hashes"].get(r) != files[r]["sha256"]]
            left = [r for r in remove if after["hashes"].get(r) is not None]
            if bad or left:
                raise DeployError(
                    "copy to %s did not verify: %s" % (port, ", ".join(bad + left)),
                    code="verify", port=port,
                    fix="the board stays in maintenance mode; run the deploy again, and if it "
                    "fails again check the USB cable and `wardcall monitor --port %s`" % port)
            result.copied, result.removed = copy, remove
            # 5c. maintenance off, reset into the app
            step("maintenance mode off, reset")
            b.run(chain(["exec", flag_off], ["reset"]), retries=2)
            result.flag_cleared = True
        else:
            step("everything up to date (%d files); maintenance mode off, reset" % same)
            b.run(chain(["exec", flag_off], ["reset"]), retries=2)
            result.flag_cleared = True
    finally:
        try:
            for name in os.listdir(tmpdir):
                os.remove(os.path.join(tmpdir, name))
            os.rmdir(tmpdir)
        except OSError:
            pass

    # 6. online at the host
    if wait and host_url:
        step("waiting for %s online at %s" % (device, host_url))
        wait_online(host_url, device, timeout=online_timeout, port=port, user=host_user,
                    password=host_password)
        result.online = True
        step("online")
    result.ok = True
    result.seconds = time.monotonic() - started
    return result
