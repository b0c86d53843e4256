"""The badge reader: the MFRC522 driver (firmware/lib/mfrc522.py) and its task (badge.py) under
the real MicroPython unix port, against the emulator's virtual MFRC522
(boards/emulator/shims/_emu_mfrc522.py) on the test double's SPI bus; and the whole
application against a scripted host (fakehost.py): a card toggles presence, PRESENCE carries
its UID, a dead reader is a device fault. The same on an emulated board against the real host:
test_badge_e2e.py."""
import json

import pytest

from tests.firmware import mprun
from tests.firmware.fakehost import FakeHost, P

pytestmark = pytest.mark.timeout(90)

# a reader on the test double's bus, and a clock the test moves (the badge task's debounce)
SETUP = r"""
import asyncio, machine, board
from badge import reader
import mfrc522
now = [1000]
got = []
faults = []
b = reader(board.BADGE, got.append, faults.append)
b._ticks = lambda: now[0]
chip = machine.chip()
def cards(*uids):
    chip.set_cards([bytes.fromhex(u) for u in uids])
async def read():
    r = b.chip.wake()
    n = await b.chip.select(b._uid) if r > 0 else 0
    return r, (bytes(b._uid[:n]).hex() if n > 0 else n)
async def poll(ms=100):
    await b.poll()
    now[0] += ms
"""


def run(tmp_path, body):
    code = SETUP + "async def main():\n" + "".join("    " + l + "\n" for l in body.strip("\n").splitlines()) \
        + "asyncio.run(main())\n"
    rc, out = mprun.run_code(code, tmp_path)
    assert rc == 0 and "Traceback" not in out, out
    return {l.split()[0]: l.split(" ", 1)[1] if " " in l else "" for l in out.splitlines() if l[:1].isupper()}, out


def test_reads_uids_of_4_7_and_10_bytes_and_picks_one_card_of_several(tmp_path):
    got, out = run(tmp_path, r"""
print("START", await b.start())
cards()
print("NONE", await read())
for uid in ("04a1b2c3", "04112233445566", "0411223344556677889a", "f1020304"):
    cards(uid)
    print("READ", uid, await read(), await read(), chip.cards[0].state)
cards("04a1b2c3", "04a1b2c7")
print("TWO", await read(), await read())
cards("0f000000", "0e000000", "8f000001")
print("THREE", await read())
cards("01310500", "01310600", "01210000")
print("LATER", await read())
cards("04a1b2c3", "04112233445566")
print("SIZES", await read())
chip.regs[0x14] = 0x80
print("ANTENNA_OFF", await read())
print("SENT", chip.transceives)
""")
    assert got["START"] == "True"
    assert got["NONE"] == "(0, 0)"
    # each UID read whole, again at the next read (the card was halted and woken by WUPA), halted
    reads = [l.split(" ", 2)[1:] for l in out.splitlines() if l.startswith("READ ")]
    assert [uid for uid, _ in reads] == ["04a1b2c3", "04112233445566", "0411223344556677889a", "f1020304"]
    for uid, rest in reads:
        assert rest == "(1, '%s') (1, '%s') 3" % (uid, uid), (uid, rest)
    # collisions resolved bit by bit: the cards with a 1 at the first differing bit, every time
    assert got["TWO"] == "(1, '04a1b2c7') (1, '04a1b2c7')"
    assert got["THREE"] == "(1, '8f000001')"
    # the second collision (CL bit 16) comes in a frame sent with 13 known bits (RxAlign 5): its
    # CollPos counts from the first FIFO byte, which starts at CL byte 1
    assert got["LATER"] == "(1, '01310500')"
    # a 4-byte and a 7-byte card: CL1 04 a1 b2 c3 against 88 04 11 22 (cascade tag) differ
    # first in bit 2 of byte 0, where the 4-byte card has the 1
    assert got["SIZES"] == "(1, '04a1b2c3')"
    assert got["ANTENNA_OFF"] == "(0, 0)"          # no field, no card


def test_crc_a_matches_iso_14443_3(tmp_path):
    rc, out = mprun.run_code("from mfrc522 import crc_a\nprint('CRC', [hex(crc_a(b, 2)) for b in "
                             "(b'\\x00\\x00', b'\\x12\\x34', b'\\x50\\x00')])", tmp_path)
    assert rc == 0, out
    # ISO/IEC 14443-3 Annex B: 00 00 -> A0 1E, 12 34 -> 26 CF; HLTA 50 00 -> 57 CD
    assert "CRC ['0x1ea0', '0xcf26', '0xcd57']" in out


def test_a_card_toggles_once_per_presentation_and_a_card_there_at_start_is_held(tmp_path):
    got, _ = run(tmp_path, r"""
cards("04a1b2c3")
await b.start()
for _ in range(5):
    await poll()
print("AT_START", got)
cards()
for _ in range(11):
    await poll()
cards("04a1b2c3")
for _ in range(30):
    await poll()
print("PRESENTED", got)
cards()
for _ in range(5):
    await poll()
cards("04a1b2c3")
for _ in range(5):
    await poll()
print("BACK_SOON", got)
cards("04112233445566")
await poll()
print("OTHER", got)
cards()
await poll(1000)
await poll()
cards("04112233445566")
await poll()
print("AWAY_1S", got)
chip.set_cards([])
for _ in range(3):
    await poll(400)
cards("0411223344556677889a")
await poll()
print("TEN", got, b.cards)
""")
    assert got["AT_START"] == "[]"                              # lying there at start: held
    assert got["PRESENTED"] == "['04a1b2c3']"                   # held for 3 s: once
    assert got["BACK_SOON"] == "['04a1b2c3']"                   # away 0.5 s: the same presentation
    assert got["OTHER"] == "['04a1b2c3', '04112233445566']"     # another card counts at once
    assert got["AWAY_1S"] == "['04a1b2c3', '04112233445566', '04112233445566']"
    assert got["TEN"].startswith("['04a1b2c3', '04112233445566', '04112233445566', '0411223344556677889a'] 4")


@pytest.mark.parametrize("miso", [0x00, 0xFF])
def test_a_reader_that_does_not_answer_is_one_device_fault_and_is_retried(tmp_path, miso):
    got, out = run(tmp_path, r"""
chip.dead = %d
print("START", await b.start(), faults)
for _ in range(3):
    now[0] += 5000
    await b.start()
print("RETRIED", faults, b.ok)
chip.dead = None
cards("04a1b2c3")
print("BACK", await b.start(), b.ok)
await poll()
cards()
await poll(1000)
await poll()
cards("04a1b2c3")
await poll()
print("CARD", got)
chip.dead = %d
await poll()
print("DIED", faults, b.ok)
chip.dead = None
chip.reset()
await b.start()
await poll()
chip.reset()
await poll()
print("BROWNOUT", faults, b.ok)
""" % (miso, miso))
    assert got["START"] == "False ['badge reader not answering']"
    assert got["RETRIED"] == "['badge reader not answering'] False"    # one fault per outage
    assert got["BACK"] == "True True"
    assert got["CARD"] == "['04a1b2c3']"
    assert got["DIED"] == "['badge reader not answering', 'badge reader not answering'] False"
    # a chip that lost its set-up (reset by a brown-out) is set up again at once: no fault
    assert got["BROWNOUT"] == "['badge reader not answering', 'badge reader not answering'] True"
    assert out.count("reader not answering (") == 2                  # logged once per outage
    assert "reader ready (MFRC522 version 0x92) again" in out


def test_the_idle_poll_allocates_nothing(tmp_path):
    # what the task does every 100 ms without a card: WUPA, the chip's timer ends it, the
    # debounce notes it; with the virtual chip (which must not churn the emulated board's heap
    # either), and on a bus stub that answers every read with TimerIRq (the driver alone)
    got, _ = run(tmp_path, r"""
import gc
await b.start()
cards()
gc.collect()
gc.disable()
before = gc.mem_alloc()
for _ in range(50):
    b.chip.wake()
    b._saw(0)
print("VIRTUAL", gc.mem_alloc() - before, chip.transceives)
gc.enable()
class Quiet:
    def write(self, buf):
        pass
    def write_readinto(self, wbuf, rbuf):
        rbuf[1] = 0x01
b.chip._spi = Quiet()
print("WAKE", b.chip.wake())
gc.collect()
gc.disable()
before = gc.mem_alloc()
for _ in range(50):
    b.chip.wake()
    b._saw(0)
print("ALLOCATED", gc.mem_alloc() - before)
gc.enable()
""")
    assert got["VIRTUAL"] == "0 50"
    assert got["WAKE"] == "0"
    assert got["ALLOCATED"] == "0"


@pytest.fixture
def host():
    h = FakeHost("bed-101-1", mprun.KEY, hb_ms=300).start()
    yield h
    h.stop()


def presences(host):
    return [(m["on"], m["staff"]) for m in host.messages(P.PRESENCE)]


def test_the_application_a_badge_toggles_presence_names_it_and_survives_a_reboot(tmp_path, host):
    mprun.write_config(tmp_path, mprun.config(port=host.port))
    out = mprun.run_scenario(r"""
import calls as C
async def scenario(app):
    chip = machine.chip()
    await until(lambda: app.link.online, 5000, "online")
    await until(lambda: app.badge.ok, 2000, "reader ready")
    await press(board.CALL); await until(lambda: app.calls.active[C.S_PATIENT], 300, "patient call")
    chip.set_cards([bytes.fromhex("04a1b2c3")])
    await until(lambda: app.calls.presence, 1000, "presence by badge")
    check(app.calls.active[C.S_PATIENT] is None, "the badge clears a patient call as the button does")
    check(app.lamps.pattern(1) is not None and app.calls.staff == "04a1b2c3", "staff kept")
    await asyncio.sleep_ms(1500)
    check(app.calls.presence, "a card held does not toggle again")
    chip.set_cards([])
    await asyncio.sleep_ms(1300)
    chip.set_cards([bytes.fromhex("04a1b2c3")])
    await until(lambda: not app.calls.presence, 1000, "presence off by badge")
    chip.set_cards([])
    await asyncio.sleep_ms(1300)
    chip.set_cards([bytes.fromhex("04112233445566")])
    await until(lambda: app.calls.presence, 1000, "presence on by a 7-byte badge")
    await asyncio.sleep_ms(400)
""", tmp_path)
    mprun.assert_passed(out)
    host.wait_for(lambda: len(presences(host)) >= 3, 5, "three PRESENCE")
    assert presences(host) == [(1, "04a1b2c3"), (0, "04a1b2c3"), (1, "04112233445566")]
    assert "presence on (badge 04a1b2c3)" in out and "presence off (badge 04a1b2c3)" in out
    cancels = [m for m in host.messages(P.CANCEL)]
    assert [m["reason"] for m in cancels] == [P.CANCEL_PRESENCE]
    assert json.loads((tmp_path / "calls.json").read_text())["s"] == "04112233445566"
    # a reboot with the card still on the reader: presence and its badge restored, not toggled
    n = len(presences(host))
    out2 = mprun.run_scenario(r"""
async def scenario(app):
    machine.chip().set_cards([bytes.fromhex("04112233445566")])
    await until(lambda: app.link.online, 5000, "online")
    check(app.calls.presence and app.calls.staff == "04112233445566", "presence by badge restored")
    await asyncio.sleep_ms(1500)
    check(app.calls.presence, "the card lying on the reader at start did not toggle it")
    await press(board.PRESENCE)
    await until(lambda: not app.calls.presence, 500, "presence off by the button")
    await asyncio.sleep_ms(300)
""", tmp_path)
    mprun.assert_passed(out2)
    assert "presence restored on (badge 04112233445566)" in out2
    assert "card 04112233445566 on the reader at start: taken as held" in out2
    host.wait_for(lambda: len(presences(host)) > n, 5, "PRESENCE off")
    assert presences(host)[n:] == [(0, "")]                       # the button: no badge


def test_the_application_with_a_dead_reader_reports_a_device_fault_and_keeps_working(tmp_path, host):
    mprun.write_config(tmp_path, mprun.config(port=host.port))
    out = mprun.run_scenario(r"""
import calls as C
machine.chip().dead = 0
async def scenario(app):
    await until(lambda: app.link.online, 5000, "online")
    await until(lambda: app.calls.active[C.S_DEVICE], 2000, "technical call for the reader")
    await press(board.CALL); await until(lambda: app.calls.active[C.S_PATIENT], 300, "calls still work")
    await press(board.PRESENCE); await until(lambda: app.calls.presence, 300, "button presence works")
    await asyncio.sleep_ms(600)
""", tmp_path)
    mprun.assert_passed(out)
    faults = host.wait_for(lambda: host.messages(P.FAULT), 5, "FAULT")
    assert [(f["code"], f["active"], f["detail"]) for f in faults][:1] == [(P.FAULT_DEVICE, 1, "badge reader not answering")]
    assert presences(host) == [(1, "")]
    assert out.count("reader not answering (") == 1
