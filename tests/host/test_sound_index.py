"""Whether the consoles sound is kept with the alarms (Ward.sounding, sounding_since_silence)
instead of looked up in every alarm at each change. Any sequence of alarms raised, raised again
and cleared, calls placed and acknowledged, silences and their end must give what the rule
itself says (consoles.py's docstring), computed here from the ward's whole state."""
from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings, strategies as st

from wardcall.clock import ManualClock
from wardcall.config import parse_config
from wardcall.protocol import alarm_priority, wardproto as wp
from wardcall.ward import Ward
from wardcall.ward.effects import Effects
from wardcall.ward.model import PLACED, Alarm

DEVICES = ["a1", "a2", "b1"]
KINDS = ["terminal_offline", "no_console", "database", "device_trying_to_connect", "integration_unreachable"]


def make_ward() -> tuple[Ward, ManualClock]:
    clock = ManualClock()
    config = parse_config(Path("/tmp/test-ward.toml"), {
        "ward": {"name": "W"},
        "rooms": {"101": {"beds": ["1", "2"]}, "102": {"beds": ["1"]}},
        "terminals": {"a1": {"room": "101", "bed": "1"}, "a2": {"room": "101", "bed": "2"},
                      "b1": {"room": "102", "bed": "1"}},
    })
    ward = Ward(config, clock)
    for device in DEVICES:
        ward.terminal_connected(device, "fw", "sim", 0, "127.0.0.1:1")
    ward.set_consoles(1)
    return ward, clock


def audible_by_the_rule(ward: Ward) -> bool:
    """The rule, from everything the ward holds (what audible() looked at before the index)."""
    waiting = [c for c in ward.calls.values() if c.state == PLACED]
    if any(alarm_priority(c.kind) == wp.ALARM_HIGH for c in waiting):
        return True
    alerts = [c.alerted_at for c in waiting]
    alerts += [a.last for a in ward.alarms.values() if a.kind in ("terminal_offline", "no_console", "database")]
    if not alerts:
        return False
    if ward.silenced_at is None or ward._silence_deadline is None:
        return True
    return max(alerts) > ward.silenced_at


step = st.one_of(
    st.tuples(st.just("raise"), st.integers(0, 5), st.sampled_from(KINDS)),
    st.tuples(st.just("clear"), st.integers(0, 5)),
    st.tuples(st.just("silence"), st.sampled_from([1.0, 30.0])),
    st.tuples(st.just("advance"), st.sampled_from([0.0, 0.5, 2.0, 40.0])),
    st.tuples(st.just("call"), st.sampled_from(DEVICES), st.sampled_from([wp.PATIENT, wp.BATHROOM, wp.CODE_BLUE])),
    st.tuples(st.just("ack"), st.sampled_from(DEVICES)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=40))
def test_the_consoles_sound_as_the_rule_says_after_any_sequence(steps):
    ward, clock = make_ward()
    kinds: dict[str, str] = {}
    next_call = {d: 1 for d in DEVICES}
    for op, *args in steps:
        if op == "raise":
            alarm_id = f"alarm{args[0]}"
            kind = kinds.setdefault(alarm_id, args[1])      # an id keeps its kind
            wall = clock.wall()
            ward._raise_alarm(Effects(), Alarm(alarm_id, kind, "text", since=wall, last=wall))
        elif op == "clear":
            ward._clear_alarm(Effects(), f"alarm{args[0]}", "cleared")
        elif op == "silence":
            ward.silence(args[0], "nurse")
        elif op == "advance":
            clock.advance(args[0])
            for device in DEVICES:
                ward.frame_received(device)
            ward.tick()
        elif op == "call":
            ward.place_call(args[0], next_call[args[0]], args[1], 0)
            next_call[args[0]] += 1
        elif op == "ack":
            for call in list(ward.calls.values()):
                if call.device == args[0] and call.state == PLACED:
                    ward.acknowledge(call.id, "nurse")
        assert ward.audible() == audible_by_the_rule(ward), (op, args)
        assert ward.sound_view()["audible"] == ward.audible()
