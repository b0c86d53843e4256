"""Waiting for the console: a wait ends when the line it matched is complete, so the caller
reads all of it (a board can print a line in pieces: MicroPython's print writes each argument)."""
import pytest

PIECES = """
import sys, time
sys.stdout.write("total ")
time.sleep_ms(400)
print(42)
sys.stdout.write("prompt> ")
while True:
    time.sleep_ms(50)
"""


@pytest.mark.timeout(40)
def test_a_wait_returns_the_whole_line_and_a_prompt_can_be_waited_for(make_board):
    b = make_board("pieces", {"main.py": PIECES})
    out = b.wait_console("total", 15)
    assert "total 42\n" in out.replace("\r\n", "\n")
    # a prompt never ends its line: asked for as such, it is found at once
    assert b.wait_console("prompt> ", 10, whole_line=False).endswith("prompt> ")
    with pytest.raises(TimeoutError):
        b.wait_console("prompt> ", 1)
