"""Shared steps of the fault tests: a rig of emulated boards behind the fault proxy, pressing
buttons with a ledger, and waiting for delivery."""
from __future__ import annotations


from tests.faults.ledger import Ledger, console_placed, recorded_calls
from tests.support.waiting import WaitTimeout, wait_until

# the input that places each kind of call (firmware/lib/calls.py: one open call per slot)
# a release counts once the firmware has read the open contact at two polls this far apart: its
# input loop debounces 30 ms, so it has then taken the release and the next press is a new one
RELEASE_SETTLE_MS = 60
PRESS_SEEN_S = 10.0          # a held button the firmware has not seen by then was lost
BUTTON_KIND = {"call": "patient", "assist": "staff_assist", "code": "code_blue"}


def rig_behind_proxy(make_terminals, proxy, n: int, **kw):
    """n emulated boards whose TCP goes through `proxy` to the host; waits until all are online."""
    rig = make_terminals(n, cfg_extra={"port": proxy.port}, wait=False, **kw)
    proxy.dest = rig.ward.terminal_port
    rig.wait_online(timeout=20.0 + n / 5)
    return rig


def relogin(rig) -> None:
    """After a host restart the test's console logs in again with a fresh client, as a console
    whose stream and link went down with the host may. (Console sessions themselves are kept on
    disk, web/sessions.py; this helper does not rely on that either way.)"""
    from tests.fixtures.host import NURSE
    from wardcall.client import WardApi

    async def connect():
        api = WardApi(rig.ward.api_url)
        await api.login(*NURSE)
        return api
    stale = rig.api.api
    rig.api.api = rig.api.run(connect())
    rig.api.run(stale.close())


def restart_host(rig, kill: bool = True) -> None:
    """SIGKILL (or SIGTERM) the host and start it again on the same record and ports."""
    if kill:
        rig.server.kill()
    else:
        rig.server.stop()
    rig.server.start()
    relogin(rig)


def human_press(b, button: str, taken: str) -> None:
    """Press a button and hold it until the firmware says it took it (`taken` on its console),
    release it, and keep the finger off until the firmware has read the release (the emulator
    reports its reads), so that the next press is a new press. A press is pressed once: one the
    firmware did not see within PRESS_SEEN_S (its input loop can lag on a loaded 2-core test
    machine, but not for that long) is a lost press, and fails the test."""
    mark = b.console_mark()
    b.press(button)
    try:
        b.wait_console(taken, PRESS_SEEN_S, since=mark)
    except TimeoutError:
        raise AssertionError(f"{b.name}: {button} held for {PRESS_SEEN_S:g} s but the firmware never "
                             f"logged {taken!r}: a lost press\n--- console tail ---\n{b.console(since=mark)[-1500:]}") from None
    finally:
        b.release(button, settle_ms=RELEASE_SETTLE_MS, timeout=PRESS_SEEN_S)


def press(rig, ledger: Ledger, i: int, button: str = "call") -> None:
    """Tap a call button on board i (150 ms, a real press) and count it."""
    human_press(rig.board(i), button, f"{BUTTON_KIND[button]} call")
    ledger.press(rig.devices[i])


def clear_calls(rig, i: int) -> None:
    """Presence on (clears the board's patient/assist calls) and off again, as a nurse does."""
    b = rig.board(i)
    for state in ("on", "off"):
        human_press(b, "presence", f"presence {state}")


def placed_by_boards(rig) -> dict[str, list[int]]:
    """The call ids each board announced on its console."""
    return {dev: [cid for _, cid in console_placed(rig.board(i).console())] for i, dev in enumerate(rig.devices)}


def acknowledged_by_host(rig, i: int) -> set[int]:
    """Call ids for which board i printed the host's CALL_ACK (its outbox let them go)."""
    import re
    return {int(m) for m in re.findall(r"host stored CALL (\d+)", rig.board(i).console())}


def wait_all_delivered(rig, ledger: Ledger, timeout: float = 30.0) -> dict[str, list[int]]:
    """Until every press is placed on its board, recorded by the host and acknowledged back to
    the board (nothing left in an outbox). Returns the placed ids."""
    def done():
        placed = placed_by_boards(rig)
        if any(len(placed.get(d, [])) < n for d, n in ledger.presses.items()):
            return False
        record = recorded_calls(rig.ward.database)
        for i, dev in enumerate(rig.devices):
            ids = set(placed.get(dev, []))
            if not ids <= set(record.get(dev, [])) or not ids <= acknowledged_by_host(rig, i):
                return False
        return placed
    try:
        return wait_until(done, timeout, "every pressed call recorded by the host and acknowledged to its board")
    except WaitTimeout as exc:
        tails = "\n".join(f"--- {dev} console tail ---\n{rig.board(i).console()[-1500:]}" for i, dev in enumerate(rig.devices))
        raise AssertionError(f"{exc}\npresses {dict(ledger.presses)}\nrecorded {recorded_calls(rig.ward.database)}\n{tails}") from None
