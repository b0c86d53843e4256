"""`wardcall flash`: erase a board and write MicroPython with esptool 5.

The chip and the offset come from boards/<board>/flash.json ({"chip": ..., "flash_offset": ...});
nothing here hard-codes them. esptool runs as a subprocess (`python -m esptool`), so what is tested
is the real command line.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .. import checkout as paths
from .errors import DeployError

DEFAULT_BAUD = 460800

# ESP image header: byte 0 is the magic 0xE9; bytes 12-13 (little endian) are the chip id.
ESP_IMAGE_MAGIC = 0xE9
CHIP_IDS = {"esp32": 0, "esp32s2": 2, "esp32c3": 5, "esp32s3": 9, "esp32c2": 12, "esp32c6": 13}


def load_flash_info(board: str, boards_dir: str | Path | None = None) -> dict[str, Any]:
    """{"chip": str, "flash_offset": int} from boards/<board>/flash.json, or a DeployError."""
    base = Path(boards_dir) if boards_dir else paths.BOARDS
    path = base / board / "flash.json"
    known = sorted(p.parent.name for p in base.glob("*/flash.json"))
    if not path.is_file():
        raise DeployError(
            "unknown board %r: no %s" % (board, path),
            code="unknown-board",
            fix="use one of: %s" % ", ".join(known),
        )
    try:
        info = json.loads(path.read_text())
        chip = str(info["chip"])
        offset = info["flash_offset"]
        offset = int(offset, 0) if isinstance(offset, str) else int(offset)
    except (ValueError, KeyError, TypeError) as e:
        raise DeployError(
            "%s is malformed (%s)" % (path, e),
            code="bad-board-file",
            fix='it must be {"chip": "esp32", "flash_offset": "0x1000"}',
        )
    return {"chip": chip, "flash_offset": offset}


def esptool_command(chip: str, port: str, baud: int = DEFAULT_BAUD) -> list[str]:
    """The esptool program and its global options (chip, port, baud)."""
    return [sys.executable, "-m", "esptool", "--chip", chip, "--port", port, "--baud", str(baud)]


def erase_args(chip: str, port: str, baud: int = DEFAULT_BAUD) -> list[str]:
    return esptool_command(chip, port, baud) + ["erase-flash"]


def write_args(chip: str, port: str, offset: int, firmware: str | Path, baud: int = DEFAULT_BAUD) -> list[str]:
    return esptool_command(chip, port, baud) + ["write-flash", hex(offset), str(firmware)]


def check_firmware_image(image: str | Path, chip: str) -> None:
    """Refuse a file that is not an ESP image for this chip before touching the board."""
    firmware = Path(image)
    if not firmware.is_file():
        raise DeployError(
            "firmware file %s does not exist" % firmware,
            code="no-firmware",
            fix="download MicroPython for your board from https://micropython.org/download/ "
            "(the .bin file) and pass it with --firmware",
        )
    head = firmware.read_bytes()[:16]
    if len(head) < 16 or head[0] != ESP_IMAGE_MAGIC:
        raise DeployError(
            "%s is not an ESP firmware image (first byte %s, expected 0xe9)"
            % (firmware, "0x%02x" % head[0] if head else "none"),
            code="bad-firmware",
            fix="pass the MicroPython .bin for %s (not the .elf, .uf2 or .app-bin)" % chip,
        )
    chip_id = int.from_bytes(head[12:14], "little")
    expected = CHIP_IDS.get(chip)
    if expected is not None and chip_id != expected:
        other = [name for name, cid in CHIP_IDS.items() if cid == chip_id]
        raise DeployError(
            "%s is built for %s, but the board is %s"
            % (firmware, other[0] if other else "chip id %d" % chip_id, chip),
            code="wrong-firmware",
            fix="download the MicroPython build for %s" % chip,
        )


def _explain_esptool_failure(port: str, output: str) -> DeployError:
    low = output.lower()
    if "no such file" in low or "errno 2]" in low:
        return DeployError(
            "no board on %s: the port does not exist" % port,
            code="no-board",
            port=port,
            fix="plug the board in with a data USB cable and check the port name "
            "(`wardcall monitor --list` or `ls /dev/ttyUSB* /dev/ttyACM*`)",
        )
    # esptool's generic line says "the port is busy or doesn't exist": look at the errno instead
    if ("resource busy" in low or "exclusively lock" in low or "permission denied" in low
            or "errno 13]" in low or "errno 16]" in low):
        return DeployError(
            "%s is busy or not accessible" % port,
            code="busy",
            port=port,
            fix="close any monitor or mpremote session on it; on Linux add yourself to the "
            "'dialout' group",
        )
    if "failed to connect" in low or "no serial data received" in low or "wrong boot mode" in low:
        return DeployError(
            "esptool could not talk to the bootloader on %s" % port,
            code="no-bootloader",
            port=port,
            fix="hold BOOT, press and release EN/RST, release BOOT, then retry",
        )
    if "this chip is" in low or "wrong chip" in low or "unexpected chip" in low:
        return DeployError(
            "the chip on %s is not the one --board names" % port,
            code="wrong-chip",
            port=port,
            fix="check --board (esp32, esp32c3, esp32s3) against the module on the board",
        )
    last = [line for line in output.strip().splitlines() if line.strip()]
    return DeployError(
        "esptool failed on %s: %s" % (port, last[-1] if last else "no output"),
        code="esptool",
        port=port,
        fix="see the esptool output above; run `wardcall flash` again with the board in "
        "bootloader mode",
    )


def run_esptool(args: list[str], port: str, timeout: float = 300, echo: bool = True) -> str:
    """Run one esptool command; raise a DeployError that explains a failure."""
    try:
        proc = subprocess.run(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    except subprocess.TimeoutExpired:
        raise DeployError(
            "esptool did not finish within %d s on %s" % (timeout, port),
            code="timeout",
            port=port,
            fix="unplug and replug the board, then retry",
        )
    if echo and proc.stdout:
        sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        raise _explain_esptool_failure(port, proc.stdout or "")
    return proc.stdout


def flash(port: str, board: str, firmware: str | Path, baud: int = DEFAULT_BAUD, erase: bool = True,
          boards_dir: str | Path | None = None, echo: bool = True, timeout: float = 300) -> list[list[str]]:
    """Erase the flash (unless erase=False) and write MicroPython at the board's offset."""
    if not port:
        raise DeployError("no port given", code="no-port", fix="pass --port /dev/ttyUSB0")
    info = load_flash_info(board, boards_dir)
    check_firmware_image(firmware, info["chip"])
    steps = []
    if erase:
        steps.append(erase_args(info["chip"], port, baud))
    steps.append(write_args(info["chip"], port, info["flash_offset"], firmware, baud))
    for args in steps:
        run_esptool(args, port, timeout=timeout, echo=echo)
    return steps
