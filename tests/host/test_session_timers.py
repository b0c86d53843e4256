"""SessionTimers (terminal_server.py) with a hand-moved clock: every session's heartbeats on an
absolute grid from one timer, beats a stalled loop missed skipped rather than burst, and the
dead-link deadline moved on by frames and kept otherwise. No sockets, no sleeps."""
from __future__ import annotations

import pytest

from wardcall.terminal_server import SessionTimers, next_beat

pytestmark = pytest.mark.timeout(30)


class ManualLoop:
    """What SessionTimers uses of an event loop: time() and call_at(), run by hand."""

    def __init__(self) -> None:
        self.now = 100.0
        self.armed: list["Handle"] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when, callback):
        handle = Handle(when, callback)
        self.armed.append(handle)
        return handle

    def call_soon(self, callback):
        return self.call_at(self.now, callback)

    def run_until(self, t: float) -> int:
        """Move the clock to t, firing every armed timer due on the way (late if the clock
        jumps); returns the number of wake-ups."""
        wakeups = 0
        while True:
            due = [h for h in self.armed if not h.cancelled and h.when <= t]
            if not due:
                break
            handle = min(due, key=lambda h: h.when)
            self.armed.remove(handle)
            self.now = max(self.now, handle.when)
            wakeups += 1
            handle.callback()
        self.now = t
        return wakeups

    def stall(self, seconds: float) -> None:
        """The loop busy elsewhere: time passes, nothing fires."""
        self.now += seconds


class Handle:
    def __init__(self, when, callback) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeSession:
    """The session side of SessionTimers as TerminalSession implements it (its grid: next_beat)."""

    def __init__(self, loop: ManualLoop, interval: float, dead_after: float) -> None:
        self.loop, self.interval, self.dead_after = loop, interval, dead_after
        self.closed_because = None
        self.device, self.address = "t", "127.0.0.1:1"
        self.beats: list[float] = []
        self.last_frame = loop.now

    def heartbeat_due(self, due: float, now: float) -> float:
        self.beats.append(now)
        return next_beat(due, now, self.interval)

    def deadline_due(self, now: float):
        deadline = self.last_frame + self.dead_after
        if deadline > now:
            return deadline
        self.closed_because = "dead link"
        return None

    def drop(self, reason: str) -> None:
        self.closed_because = reason


def test_heartbeats_stay_on_their_grid_and_a_stall_skips_beats_instead_of_drifting():
    loop = ManualLoop()
    timers = SessionTimers(loop)
    s = FakeSession(loop, 1.0, 1e9)
    timers.start(s, 1e9)
    loop.run_until(103.5)
    assert s.beats == [100.0, 101.0, 102.0, 103.0]
    loop.stall(2.2)                 # 105.7: the beats of 104 and 105 are due and missed
    loop.run_until(108.0)
    # one beat at once, then back on the grid (106, 107, 108): not 104 + 105 in a burst, not 106.7, 107.7 …
    assert s.beats[4:] == [105.7, 106.0, 107.0, 108.0]


def test_one_wake_up_serves_every_session_due_together():
    loop = ManualLoop()
    timers = SessionTimers(loop)
    sessions = [FakeSession(loop, 1.0, 1e9) for _ in range(500)]
    for i, s in enumerate(sessions):
        loop.now = 100.0 + i * SessionTimers.GRANULARITY_S / 1000    # all within one granule
        timers.start(s, 1e9)
    wakeups = loop.run_until(110.5)
    assert all(len(s.beats) == 11 for s in sessions)
    # one wake-up a second and as many more turns as the sessions due need, TURN_MAX a turn
    # (the loop reads what came in between): not one per session and beat
    turns = -(-len(sessions) // SessionTimers.TURN_MAX)
    assert wakeups <= 11 * turns + 1, wakeups
    # and the beats served in later turns are not late: every one within a granule of its grid
    assert all(abs(b - (100.0 + k)) < SessionTimers.GRANULARITY_S for s in sessions for k, b in enumerate(s.beats))


def test_a_turn_serves_at_most_turn_max_sessions_and_the_rest_follow_at_once():
    loop = ManualLoop()
    timers = SessionTimers(loop)
    sessions = [FakeSession(loop, 1.0, 1e9) for _ in range(3 * SessionTimers.TURN_MAX + 5)]
    for s in sessions:
        timers.start(s, 1e9)
    served = []
    while True:
        due = [h for h in loop.armed if not h.cancelled and h.when <= loop.now]
        if not due:
            break
        before = sum(len(s.beats) for s in sessions)
        loop.armed.remove(due[0])
        due[0].callback()
        served.append(sum(len(s.beats) for s in sessions) - before)
    assert served == [SessionTimers.TURN_MAX] * 3 + [5]
    assert all(s.beats == [100.0] for s in sessions)


def test_the_dead_link_deadline_follows_frames_and_ends_a_silent_session():
    loop = ManualLoop()
    timers = SessionTimers(loop)
    talking, silent = FakeSession(loop, 1.0, 3.0), FakeSession(loop, 1.0, 3.0)
    timers.start(talking, 3.0)
    timers.start(silent, 3.0)
    for t in range(1, 10):
        loop.run_until(100.0 + t)
        talking.last_frame = loop.now
    assert talking.closed_because is None
    assert silent.closed_because == "dead link"
    # ended at its deadline (103), not later; its heartbeats stop with it
    assert silent.beats == [100.0, 101.0, 102.0]
    assert len(talking.beats) == 10


def test_a_closed_session_is_forgotten():
    loop = ManualLoop()
    timers = SessionTimers(loop)
    s = FakeSession(loop, 1.0, 3.0)
    timers.start(s, 3.0)
    loop.run_until(101.5)
    s.closed_because = "connection closed by the terminal"
    loop.run_until(110.0)
    assert s.beats == [100.0, 101.0]
    assert not [h for h in loop.armed if not h.cancelled], "a timer stays armed for nothing"


def test_a_stalled_loop_does_not_take_its_own_lateness_for_a_dead_link():
    """The loop held up past a session's deadline: frames it has not read yet may be waiting.
    The deadline is looked at again shortly after, once they are read, not acted on at once."""
    loop = ManualLoop()
    timers = SessionTimers(loop)
    s = FakeSession(loop, 1e9, 3.0)
    timers.start(s, 3.0)
    loop.stall(5.0)                            # 105: the deadline (103) passed while the loop was busy
    loop.run_until(105.0)
    assert s.closed_because is None
    s.last_frame = 105.01                      # what was waiting is read right after
    loop.run_until(105.2)
    assert s.closed_because is None
    loop.run_until(109.0)                      # and then silent for good: dropped on time (108.01)
    assert s.closed_because == "dead link"
