"""The board's hardware identity in HELLO (protocol version 2, docs/SESSION.md "Identity and
keys"): the terminal sends machine.unique_id() as `hwid`, so the host can tell two physical
boards apart that claim one device id (a replacement deployed with the id of a board still
plugged in, a swapped board whose boot counter starts again at 1). Checked on the wire, at a
scripted host (fakehost.py): under the MicroPython unix port with the test shims, and on
emulated boards, whose unique_id is their own for their whole life and differs between boards."""
import pytest

from tests.firmware import mprun
from tests.firmware.fakehost import FakeHost, P
from wardcall.demo import firmware_files

pytestmark = pytest.mark.timeout(90)

SHIM_UID = bytes.fromhex("246f28102030")      # tests/firmware/shims/machine.py


@pytest.fixture
def host():
    h = FakeHost("bed-101-1", mprun.KEY, hb_ms=300).start()
    yield h
    h.stop()


def hellos(host):
    return host.messages(P.HELLO)


def test_hello_carries_machine_unique_id(tmp_path, host):
    mprun.write_config(tmp_path, mprun.config(port=host.port, discovery_port=host.udp_port))
    out = mprun.run_scenario(r"""
async def scenario(app):
    await until(lambda: app.link.online, 5000, "online")
""", tmp_path)
    mprun.assert_passed(out)
    (hello,) = hellos(host)
    assert hello["hwid"] == SHIM_UID and hello["device"] == "bed-101-1"
    assert "hardware id 246f28102030" in out


def test_an_overlong_unique_id_is_sent_hashed_to_the_protocol_limit(tmp_path, host):
    import hashlib
    uid = bytes(range(40))
    mprun.write_config(tmp_path, mprun.config(port=host.port, discovery_port=host.udp_port))
    out = mprun.run_scenario(r"""
machine.UID = bytes(range(40))
async def scenario(app):
    await until(lambda: app.link.online, 5000, "online")
""", tmp_path)
    mprun.assert_passed(out)
    assert hellos(host)[0]["hwid"] == hashlib.sha256(uid).digest()[:P.HWID_MAX]


def board_files(host):
    return firmware_files(mprun.config(port=host.port, discovery_port=host.udp_port))


def hwids_from(host):
    return [m["hwid"] for m in hellos(host)]


def test_emulated_boards_each_have_their_own_id_for_life_and_a_clone_can_be_made(fleet, tmp_path, host):
    a = fleet.add_board("a", flash_dir=tmp_path / "a", files=board_files(host))
    host.wait_for(lambda: hwids_from(host), 20, "HELLO from board a")
    assert hwids_from(host) == [a.hwid] and len(a.hwid) == 6
    # the same board after a power cycle and a reset: the same id
    a.power_cycle()
    host.wait_for(lambda: len(hwids_from(host)) >= 2, 20, "HELLO after the power cycle")
    a.reset()
    host.wait_for(lambda: len(hwids_from(host)) >= 3, 20, "HELLO after the reset")
    assert set(hwids_from(host)) == {a.hwid}
    assert a.state()["starts"] == 3
    # another board deployed with the same config (device id and key): another id
    b = fleet.add_board("b", flash_dir=tmp_path / "b", files=board_files(host))
    host.wait_for(lambda: b.hwid in hwids_from(host), 20, "HELLO from board b")
    assert b.hwid != a.hwid
    # a cloned board: the test names its id
    c = fleet.add_board("c", flash_dir=tmp_path / "c", files=board_files(host), hwid=a.hwid)
    assert c.hwid == a.hwid
    host.wait_for(lambda: hwids_from(host).count(a.hwid) > 3, 20, "HELLO from the clone")
    assert set(hwids_from(host)) == {a.hwid, b.hwid}
    # a board added again under a removed board's name is another board
    fleet.remove_board("b")
    b2 = fleet.add_board("b", flash_dir=tmp_path / "b", files=board_files(host))
    assert b2.hwid not in (a.hwid, b.hwid)
