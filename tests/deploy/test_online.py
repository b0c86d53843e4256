"""Deploy's online check (wardcall.deploy.online) against the real `wardcall serve`
(tests/fixtures/host.py): what /api/state really says about a terminal, and each way the check
fails (login refused, no login, host not there). Terminals here are simulated ones (the real
protocol with the device's real key, tests/support/simterm.py); the emulated boards coming online
after a deploy are in test_deploy_board.py."""
import asyncio
import time

import pytest

from tests.fixtures.host import ADMIN, NURSE, free_port
from tests.support.waiting import async_wait_until
from wardcall.deploy.errors import DeployError
from wardcall.deploy.online import StateReader, terminal_status, wait_online
from wardcall.host_api import HostApi
from wardcall.protocol import wardproto


def wait(server, device, timeout, **kw):
    kw.setdefault("user", NURSE[0])
    kw.setdefault("password", NURSE[1])
    return wait_online(server.api_url, device, timeout=timeout, interval=0.1, port="PORT-X", **kw)


async def status(api, device):
    state = await api.state()
    return next(t["status"] for t in state["terminals"] if t["device"] == device)


@pytest.mark.timeout(60)
async def test_online_and_online_with_a_fault_count_offline_does_not(make_ward, ward_server_factory):
    ward = make_ward(terminals=2)
    server = ward_server_factory(ward)
    device, other = ward.devices[0]["device_id"], ward.devices[1]["device_id"]
    term = ward.terminal(0)
    api = await server.login()
    try:
        # provisioned, never connected
        with pytest.raises(DeployError) as e:
            await asyncio.to_thread(wait, server, other, 0.5)
        assert "%s has never connected to the host" % other in str(e.value)

        await term.connect()
        await async_wait_until(lambda: _is(api, device, "online"), 10, "the terminal listed online")
        assert await asyncio.to_thread(wait, server, device, 10)

        # the cord unplugged: the console shows "fault", and the terminal is online all the same
        term.fault(wardproto.FAULT_CORD, True)
        await async_wait_until(lambda: _is(api, device, "fault"), 10, "the terminal listed with a fault")
        assert await asyncio.to_thread(wait, server, device, 2)

        # gone silent past three heartbeats: offline, and deploy does not take it for online
        await term.close()
        await async_wait_until(lambda: _is(api, device, "offline"), 10, "the terminal listed offline")
        started = time.monotonic()
        with pytest.raises(DeployError) as e:
            await asyncio.to_thread(wait, server, device, 1.0)
        assert e.value.code == "not-online" and e.value.port == "PORT-X"
        assert "%s did not come online at %s within 1 s" % (device, server.api_url) in str(e.value)
        assert "the host lists %s as offline" % device in str(e.value)
        assert "wardcall monitor --port PORT-X" in e.value.fix
        assert time.monotonic() - started < 20
    finally:
        await term.close()
        await api.close()


async def _is(api, device, wanted):
    return await status(api, device) == wanted


@pytest.mark.timeout(60)
def test_login_refused_stops_at_once(make_ward, ward_server_factory):
    ward = make_ward(terminals=1)
    server = ward_server_factory(ward)
    started = time.monotonic()
    with pytest.raises(DeployError) as e:
        wait(server, ward.devices[0]["device_id"], 30, password="not the password")
    # a wrong password is not retried for the whole timeout (each retry would count as a failed login)
    assert time.monotonic() - started < 15
    assert e.value.code == "host-login"
    assert "the host at %s refused the login of 'nurse'" % server.api_url in str(e.value)
    assert "$WARDCALL_HOST_PASSWORD" in e.value.fix


@pytest.mark.timeout(60)
def test_no_login_or_no_password(make_ward, ward_server_factory):
    ward = make_ward(terminals=1)
    server = ward_server_factory(ward)
    device = ward.devices[0]["device_id"]
    with pytest.raises(DeployError) as e:
        wait(server, device, 30, user=None, password=None)
    assert e.value.code == "host-login" and "wants a console login" in str(e.value)
    assert "--host-user" in e.value.fix
    with pytest.raises(DeployError) as e:
        wait(server, device, 30, password=None)
    assert e.value.code == "host-login" and "no password for the console user 'nurse'" in str(e.value)
    assert "$WARDCALL_HOST_PASSWORD" in e.value.fix


@pytest.mark.timeout(30)
def test_host_not_reachable():
    url = "http://127.0.0.1:%d" % free_port()       # nothing listens there
    started = time.monotonic()
    with pytest.raises(DeployError) as e:
        wait_online(url, "bed-101-1", timeout=1.0, interval=0.1, user=NURSE[0], password=NURSE[1])
    assert time.monotonic() - started < 10
    assert e.value.code == "not-online"
    assert "bed-101-1 did not come online at %s within 1 s" % url in str(e.value)
    assert "is not reachable" in str(e.value) and "wardcall serve" in e.value.fix


@pytest.mark.timeout(60)
def test_logs_in_again_when_the_host_ended_its_session(make_ward, ward_server_factory):
    """An administrator ended the user's sessions (or they expired) while deploy waits: the reader
    logs in again instead of failing."""
    ward = make_ward(terminals=1)
    server = ward_server_factory(ward)
    reader = StateReader(HostApi(server.api_url, *NURSE))
    device = ward.devices[0]["device_id"]
    assert terminal_status(reader.state(), device) == "unknown"
    admin = HostApi(server.api_url, *ADMIN)
    admin.login()
    assert admin.post("/api/users/%s/sessions/end" % NURSE[0])["ended"] == 1
    assert terminal_status(reader.state(), device) == "unknown"
    assert terminal_status(reader.state(), "bed-999-9") is None
