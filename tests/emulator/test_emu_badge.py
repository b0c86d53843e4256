"""The emulated board's badge reader: the virtual MFRC522 on the emulated SPI bus
(shims/_emu_mfrc522.py, machine.SPI, CS and RST through pin hooks), driven by the firmware's own
driver and task (firmware/lib/mfrc522.py, badge.py), cards presented through the control
channel (Board.present_badge / remove_badge / badge_reader)."""
import time

import pytest

from tests.fixtures.boards import EmulatorError
from tests.firmware.mprun import LIB

pytestmark = pytest.mark.timeout(60)

AWAY_S = 1.3        # a card taken off for longer than the task's 1 s debounce: presented anew

MAIN = """
import asyncio, board
from badge import reader
b = reader(board.BADGE, lambda uid: print("CARD", uid), lambda d: print("FAULT", d))
print("reader", board.BADGE)
asyncio.run(b.run(lambda: None))
"""


def files():
    return {"main.py": MAIN, **{f"lib/{m}.py": LIB / f"{m}.py" for m in ("mfrc522", "badge", "log")}}


def test_cards_of_4_7_and_10_bytes_and_several_at_once(make_board):
    b = make_board("badge", files())
    b.wait_console("reader ready (MFRC522 version 0x92)", 10)
    m = b.console_mark()
    for uid in ("04a1b2c3", "04112233445566", "0411223344556677889a"):
        b.present_badge(uid)
        b.wait_console(f"CARD {uid}\n", 5, since=m)
        b.remove_badge()
        time.sleep(AWAY_S)
    b.present_badge("04a1b2c3", "04a1b2c7")            # two cards: the collision is resolved
    b.wait_console("CARD 04a1b2c7\n", 5, since=m)
    time.sleep(1.0)                                   # held on the reader: no second card
    console = b.console(since=m)
    assert console.count("CARD ") == 4, console
    assert b.state()["badge"] == {"uids": ["04a1b2c3", "04a1b2c7"], "reader": "ok"}
    # the reader's CS and RST pins are the chip's: no output history for them
    assert not {"gpio16", "gpio17"} & set(b.outputs()), b.outputs()
    assert "Traceback" not in b.console()


def test_a_card_on_the_reader_across_a_reset_is_held_and_a_dead_reader_is_reported(make_board):
    b = make_board("badge2", files())
    b.wait_console("reader ready", 10)
    b.present_badge("04a1b2c3")
    b.wait_console("CARD 04a1b2c3", 5)
    m = b.console_mark()
    b.reset()                                         # the card stays lying on the reader
    b.wait_console("card 04a1b2c3 on the reader at start: taken as held", 10, since=m)
    time.sleep(0.5)
    assert "CARD" not in b.console(since=m)
    b.badge_reader("dead")
    b.wait_console("FAULT badge reader not answering", 5, since=m)
    b.wait_console("reader not answering", 1, since=m)
    b.badge_reader("ok")
    b.wait_console("reader ready (MFRC522 version 0x92) again", 8, since=m)
    b.remove_badge()
    time.sleep(AWAY_S)
    b.present_badge("04a1b2c3")
    b.wait_console("CARD 04a1b2c3", 5, since=m)
    assert b.console(since=m).count("FAULT") == 1     # one outage, one fault
    b.badge_reader("floating")
    m2 = b.console_mark()
    b.wait_console("FAULT badge reader not answering", 5, since=m2)
    assert "Traceback" not in b.console()


def test_badge_control_op_refuses_bad_uids(make_board):
    b = make_board("badge3", files())
    b.wait_console("reader ready", 10)
    for bad in ("04a1b2", "zz112233", "0411223344"):
        with pytest.raises(EmulatorError, match="badge UID"):
            b.present_badge(bad)
    with pytest.raises(EmulatorError, match="reader must be one of"):
        b.badge_reader("broken")
    assert b.state()["badge"] == {"uids": [], "reader": "ok"}
