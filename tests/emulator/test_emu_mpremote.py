"""The real mpremote against an emulated board, over socket://127.0.0.1:PORT."""
import subprocess
import sys
from pathlib import Path

import pytest

MPREMOTE = str(Path(sys.executable).with_name("mpremote"))


def mpremote(board, *args, timeout=30):
    r = subprocess.run([MPREMOTE, "connect", board.repl_url, *args], capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, (r.stdout, r.stderr, board.console()[-2000:])
    return r.stdout


RUNNING = """
import time
print("main v1")
while True:
    time.sleep_ms(20)
"""


@pytest.mark.timeout(90)
def test_mpremote_deploys_resets_and_the_new_code_runs(make_board, tmp_path):
    b = make_board("mpr", {"main.py": RUNNING, "boot.py": "print('boot ran')\n"})
    b.wait_console("main v1", 10)
    out = mpremote(b, "fs", "ls")
    assert "main.py" in out and "boot.py" in out
    new = tmp_path / "main.py"
    new.write_text("import machine\nprint('main v2', machine.reset_cause())\n")
    m = b.console_mark()
    mpremote(b, "fs", "cp", str(new), ":main.py", "+", "reset")
    out = b.wait_console("main v2 5", 10, since=m)
    assert "boot ran" in out
    assert (b.flash_dir / "main.py").read_text() == new.read_text()
    assert mpremote(b, "exec", "print(6 * 7)").strip() == "42"
    # absolute paths are the flash, as on an ESP32
    mpremote(b, "exec", "open('/x.txt', 'w').write('hi')")
    assert (b.flash_dir / "x.txt").read_text() == "hi"
    assert "x.txt" in mpremote(b, "fs", "ls", ":/")


@pytest.mark.timeout(60)
def test_mpremote_soft_reset_runs_boot_not_main(make_board, tmp_path):
    b = make_board("soft", {"main.py": "print('MAIN RAN')\n", "boot.py": "print('BOOT RAN')\n"})
    b.wait_console("MAIN RAN", 10)
    m = b.console_mark()
    mpremote(b, "soft-reset")
    out = b.wait_console("raw REPL; CTRL-B to exit", 10, since=m)
    out = b.wait_console("BOOT RAN", 10, since=m)
    assert "soft reboot" in out
    assert "MAIN RAN" not in b.console(since=m)
    script = tmp_path / "hello.py"
    script.write_text("print('ran', 1 + 1)\n")
    assert mpremote(b, "run", str(script)).strip() == "ran 2"


@pytest.mark.timeout(60)
def test_mpremote_interrupts_a_running_asyncio_program(make_board):
    main = """
import asyncio
async def main():
    while True:
        await asyncio.sleep_ms(10)
print("app up")
asyncio.run(main())
"""
    b = make_board("intr", {"main.py": main})
    b.wait_console("app up", 10)
    assert b.state()["phase"] == "running"
    assert mpremote(b, "exec", "print('at repl')").strip() == "at repl"
    assert "KeyboardInterrupt" in b.console()
