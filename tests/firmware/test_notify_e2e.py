"""CMD_NOTIFY end to end on an emulated board (the real firmware, compiled as deploy compiles it)
online at a scripted host that sends the command over the real session: the dome light shows
the kind's pattern for about the seconds given and then goes off, the buzzer plays the
priority's burst once, RESULT answers; the board's own call keeps the dome; 0 s, CMD_SILENCE
and a newer notification end it. Patterns are checked as in test_e2e.py (the best fit among
every pattern the firmware shows, robust on a loaded machine); the exact edges are in
test_notify.py on an injected clock."""
import time

import pytest

from tests.firmware import mprun
from tests.firmware.fakehost import FakeHost, P
from tests.firmware.test_e2e import assert_pattern, segments
from tests.support.waiting import wait_until
from wardcall.demo import firmware_files

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


class Host:
    """The scripted host's commands to the one board, each answered by RESULT."""

    def __init__(self, host):
        self.host = host

    def command(self, cmd, arg=b""):
        return self.host.command(cmd, arg)

    def notify(self, kind, priority, seconds):
        return self.command(P.CMD_NOTIFY, P.notify_arg(kind, priority, seconds))


@pytest.fixture
def online(fleet, tmp_path):
    host = FakeHost("bed-101-1", mprun.KEY, hb_ms=300).start()
    board = fleet.add_board("bed-101-1", flash_dir=tmp_path / "flash", files=firmware_files(mprun.config(port=host.port)))
    host.wait_for(lambda: host.connected() and host.messages(P.HEARTBEAT), 20, "the board online")
    yield board, Host(host)
    host.stop()


def pulses(board, since, until):
    """(freq) of every buzzer tone started in [since, until] (board time, monotonic s)."""
    return [f for t, v, f in board.history("buzzer", since=since, detail=True) if v and t <= until]


def test_notify_shows_the_pattern_for_its_seconds_plays_one_burst_and_a_newer_one_replaces_it(online):
    board, host = online
    assert board.output("dome") == 0
    t0 = time.monotonic()
    assert host.notify(P.CODE_BLUE, P.ALARM_HIGH, 4) == (1, "notify code_blue 4 s")
    # the emergency pattern, then off once the 4 s are up, for good
    wait_until(lambda: (h := board.history("dome", since=t0)) and h[-1][1] == 0 and h[-1][0] - h[0][0] > 3.0
               and time.monotonic() - h[-1][0] > 1.2, 12, "the notification over\n" + board.console()[-600:])
    h = [(t, v) for t, v in board.history("dome", since=t0)]
    lit, out = h[0][0], h[-1][0]
    assert h[0][1] == 1 and 3.6 <= out - lit <= 5.5, h            # about 4 s, on a busy machine
    assert_pattern(segments(board, "dome", t0, until=out), "emergency")
    # one burst of the high priority: 10 pulses at 880 Hz, not repeated
    assert pulses(board, t0, out + 1.0) == [880] * 10
    assert board.output("lamp_reassure") == 0 and board.output("lamp_presence") == 0   # no call of its own
    # a newer notification replaces a long one: its pattern, its end (not back to the old one)
    t1 = time.monotonic()
    assert host.notify(P.PATIENT, P.ALARM_LOW, 60)[0] == 1
    board.wait_output("dome", 1, 3)
    assert host.notify(P.BATHROOM, P.ALARM_MEDIUM, 5) == (1, "notify bathroom 5 s")
    wait_until(lambda: (h := board.history("dome", since=t1)) and h[-1][1] == 0
               and time.monotonic() - h[-1][0] > 2.5, 15, "the bathroom notification over")
    # lit by the patient one, then 1 s / 1 s from the bathroom one, off after its 5 s: the
    # first segment (patient and bathroom on) and four more
    segs = segments(board, "dome", t1)
    assert len(segs) == 5, segs
    assert_pattern(segs, "high")
    assert board.output("dome") == 0
    assert pulses(board, t1, time.monotonic()) == [440] + [660] * 3   # one burst each
    assert "Traceback" not in board.console()


def test_the_boards_own_call_keeps_the_dome_and_stop_or_silence_end_a_notification(online):
    board, host = online
    board.tap("call", 150)
    board.wait_output("dome", 1, 3)                              # its own patient call: steady
    t0 = time.monotonic()
    assert host.notify(P.BATHROOM, P.ALARM_MEDIUM, 20)[0] == 1
    time.sleep(2.5)                                              # watching the dome: 1 s / 1 s would show edges
    assert segments(board, "dome", t0) == [] and board.output("dome") == 1, board.history("dome", since=t0)
    m = board.console_mark()
    board.tap("presence", 150)                                   # clears the call: the notification shows
    board.wait_console("patient call", 3, since=m)
    t1 = time.monotonic()
    assert_pattern(wait_until(lambda: len(segments(board, "dome", t1)) >= 6 and segments(board, "dome", t1), 15,
                              "the notification's pattern after the call"), "high")
    t2 = time.monotonic()
    assert host.notify(P.BATHROOM, P.ALARM_MEDIUM, 0) == (1, "notify stopped")
    board.wait_output("dome", 0, 2)
    time.sleep(1.5)                                              # and it stays off
    assert segments(board, "dome", t2 + 0.3) == [] and board.output("dome") == 0
    assert host.notify(P.PATIENT, P.ALARM_LOW, 60)[0] == 1
    board.wait_output("dome", 1, 3)
    assert host.command(P.CMD_SILENCE) == (1, "silenced")
    board.wait_output("dome", 0, 2)
    # bad arguments: refused with the reason, nothing shown
    assert host.command(P.CMD_NOTIFY, b"\x09\x01\x05") == (0, "notify: unknown call kind 9")
    assert host.command(P.CMD_NOTIFY, b"\x01") == (0, "notify needs 3 bytes (kind, priority, seconds), not 1")
    assert board.output("dome") == 0
    assert "Traceback" not in board.console()
