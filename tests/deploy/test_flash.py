"""esptool use without hardware: argument construction checked by esptool's own parser, the
firmware image checks, and the error paths of a real esptool run against ports that do not exist."""
import json
import os
import pty
import subprocess
import sys

import pytest

from wardcall import checkout
from wardcall.deploy import flash as fl
from wardcall.deploy.cli import main as cli_main
from wardcall.deploy.errors import DeployError

pytestmark = pytest.mark.timeout(60)

EXPECTED = {"esp32": ("esp32", 0x1000), "esp32c3": ("esp32c3", 0x0), "esp32s3": ("esp32s3", 0x0)}


def image(path, chip_id):
    """A 64-byte file with an ESP image header for chip_id (enough for the pre-checks)."""
    head = bytes([0xE9, 3, 2, 0x20]) + b"\0" * 8 + chip_id.to_bytes(2, "little")
    path.write_bytes(head + b"\0" * 50)
    return path


def esptool_parse(argv):
    """Parse an esptool argv (after `python -m esptool`) with esptool's real click parser."""
    import esptool
    cli = esptool.cli
    cli._esp = None
    ctx = cli.make_context("esptool", list(argv))
    rest = list(getattr(ctx, "_protected_args", [])) + list(ctx.args)
    name, cmd, sub = cli.resolve_command(ctx, rest)
    sctx = cmd.make_context(name, sub, parent=ctx)
    return ctx.params, name, sctx.params


@pytest.mark.parametrize("board", sorted(EXPECTED))
def test_flash_json_matches_the_board_folder(board):
    info = fl.load_flash_info(board)
    assert (info["chip"], info["flash_offset"]) == EXPECTED[board]
    raw = json.loads((checkout.BOARDS / board / "flash.json").read_text())
    assert int(raw["flash_offset"], 0) == info["flash_offset"]


@pytest.mark.parametrize("board", sorted(EXPECTED))
def test_esptool_accepts_the_arguments(board, tmp_path):
    chip, offset = EXPECTED[board]
    fw = image(tmp_path / "mp.bin", fl.CHIP_IDS[chip])
    info = fl.load_flash_info(board)
    erase = fl.erase_args(info["chip"], "/dev/ttyUSB7", 460800)
    write = fl.write_args(info["chip"], "/dev/ttyUSB7", info["flash_offset"], fw, 460800)
    assert erase[:3] == write[:3] == [sys.executable, "-m", "esptool"]
    g, name, sub = esptool_parse(erase[3:])
    assert (g["chip"], g["port"], g["baud"], name) == (chip, "/dev/ttyUSB7", 460800, "erase-flash")
    g, name, sub = esptool_parse(write[3:])
    assert name == "write-flash" and g["chip"] == chip
    [(addr, f)] = sub["addr_filename"]
    f.close()
    assert addr == offset and f.name == str(fw)


def test_unknown_board_names_the_known_ones():
    with pytest.raises(DeployError) as e:
        fl.load_flash_info("esp8266")
    assert e.value.code == "unknown-board"
    assert "esp32, esp32c3, esp32s3" in e.value.fix


def test_malformed_flash_json(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "flash.json").write_text('{"chip": "esp32"}')
    with pytest.raises(DeployError) as e:
        fl.load_flash_info("x", boards_dir=tmp_path)
    assert e.value.code == "bad-board-file"


def test_firmware_for_another_chip_is_refused_before_esptool_runs(tmp_path):
    fw = image(tmp_path / "c3.bin", fl.CHIP_IDS["esp32c3"])
    with pytest.raises(DeployError) as e:
        fl.flash("/dev/ttyUSB-none", "esp32", fw, echo=False)
    assert e.value.code == "wrong-firmware"
    assert "esp32c3" in str(e.value) and "esp32" in str(e.value)


@pytest.mark.parametrize("content,code", [(None, "no-firmware"), (b"ELF\0" * 8, "bad-firmware"),
                                          (b"", "bad-firmware")])
def test_bad_firmware_files(tmp_path, content, code):
    fw = tmp_path / "fw.bin"
    if content is not None:
        fw.write_bytes(content)
    with pytest.raises(DeployError) as e:
        fl.flash("/dev/ttyUSB-none", "esp32", fw, echo=False)
    assert e.value.code == code


def test_real_esptool_on_a_missing_port(tmp_path):
    fw = image(tmp_path / "mp.bin", 0)
    port = str(tmp_path / "ttyUSB-nothing")
    with pytest.raises(DeployError) as e:
        fl.flash(port, "esp32", fw, echo=False, timeout=30)
    assert e.value.code == "no-board"
    assert port in str(e.value) and "cable" in e.value.fix


def test_real_esptool_without_a_bootloader(tmp_path):
    """A pty that never answers stands for a board that is not in bootloader mode."""
    fw = image(tmp_path / "mp.bin", 0)
    master, slave = pty.openpty()
    try:
        port = os.ttyname(slave)
        args = fl.erase_args("esp32", port)
        args[3:3] = ["--connect-attempts", "1", "--before", "no-reset"]
        with pytest.raises(DeployError) as e:
            fl.run_esptool(args, port, timeout=50, echo=False)
    finally:
        os.close(master)
        os.close(slave)
    assert e.value.code in ("no-bootloader", "esptool")
    assert port in str(e.value)


def test_esptool_explanations():
    busy = "Could not open /dev/ttyUSB0, the port is busy or doesn't exist.\n([Errno 16] could not open port /dev/ttyUSB0: [Errno 16] Device or resource busy: '/dev/ttyUSB0')"
    assert fl._explain_esptool_failure("/dev/ttyUSB0", busy).code == "busy"
    missing = "Could not open /dev/ttyUSB0, the port is busy or doesn't exist.\n([Errno 2] could not open port /dev/ttyUSB0: [Errno 2] No such file or directory: '/dev/ttyUSB0')"
    assert fl._explain_esptool_failure("/dev/ttyUSB0", missing).code == "no-board"
    boot = "A fatal error occurred: Failed to connect to ESP32: No serial data received."
    assert fl._explain_esptool_failure("/dev/ttyUSB0", boot).code == "no-bootloader"


def test_cli_dry_run_prints_the_commands(capsys, tmp_path):
    assert cli_main(["flash", "--port", "/dev/ttyUSB0", "--board", "esp32", "--firmware",
                     str(tmp_path / "x.bin"), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("--chip esp32 --port /dev/ttyUSB0 --baud 460800 erase-flash")
    assert out[1].endswith("write-flash 0x1000 " + str(tmp_path / "x.bin"))


def test_cli_flash_error_exit_code(capsys, tmp_path):
    fw = image(tmp_path / "mp.bin", fl.CHIP_IDS["esp32s3"])
    rc = cli_main(["flash", "--port", str(tmp_path / "none"), "--board", "esp32s3", "--firmware", str(fw)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "no board on" in err and "fix:" in err


def test_wardcall_flash_subprocess_help():
    """The stand-alone entry point parses like the real CLI."""
    r = subprocess.run([sys.executable, "-m", "wardcall.deploy.cli", "flash", "--help"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "--firmware" in r.stdout
