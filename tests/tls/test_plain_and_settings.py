"""Plain TCP is an explicit, alarmed bench setting; a terminal without TLS settings does not
connect at all (no silent plaintext); the settings and the board config they give."""
from __future__ import annotations

import json

import pytest

from tests.support.simterm import SimTerminal
from tests.tls.helpers import add_board
from wardcall.client import alarms_of
from wardcall.config import ConfigError, load_config

pytestmark = [pytest.mark.timeout(120)]


def test_plain_wards_raise_standing_alarms_and_plain_boards_say_so(make_terminals):
    rig = make_terminals(1, tls="plain")
    board = rig.board(0)
    assert "WITHOUT TLS" in board.console()
    alarms = {a["id"]: a for a in alarms_of(rig.api.state(), "link_security")}
    assert set(alarms) == {"tls:plain-terminals", "tls:plain-console"}, alarms
    assert "in clear" in alarms["tls:plain-terminals"]["text"]
    assert rig.ward.api_url.startswith("http://")


def test_a_tls_ward_has_no_plain_alarm_and_refuses_plain_terminals(make_terminals):
    rig = make_terminals(1)
    assert not alarms_of(rig.api.state(), "link_security")
    assert "(TLS, host certificate for wardcall.internal)" in rig.board(0).console()

    async def plain_hello():
        t = SimTerminal.from_config(rig.ward.device(1 if len(rig.ward.devices) > 1 else 0), host="127.0.0.1",
                                    port=rig.ward.terminal_port, tls="plain")
        try:
            await t.connect(timeout=5)
            return True
        except Exception:       # the host closes: it speaks TLS only
            return False
    assert not rig.api.run(plain_hello())
    rig.wait(lambda: "the peer does not speak TLS" in rig.server.log_text(), 5, "the host's line about it")


def test_a_board_without_tls_settings_does_not_connect_in_clear(make_ward, ward_server_factory, fleet, tmp_path):
    ward = make_ward(terminals=1)
    server = ward_server_factory(ward)
    board = add_board(fleet, tmp_path, ward, 0, tls=None)
    board.wait_console("NOT CONNECTING", timeout=15)
    board.wait_console("device fault: no usable TLS settings", timeout=5)
    assert "link: connecting" not in board.console()
    assert "connected from" not in server.log_text()


def test_provisioning_pins_the_ward_ca_and_the_name(make_ward):
    ward = make_ward(terminals=1)
    cfg = json.loads((ward.dir / "boards" / ward.device(0)["device_id"] / "config.json").read_text())
    settings = load_config(ward.config_path).tls
    import base64
    from cryptography import x509
    pinned = x509.load_der_x509_certificate(base64.b64decode(cfg["tls"]["ca"]))
    assert pinned == x509.load_pem_x509_certificate(settings.ca_cert.read_bytes())
    assert cfg["tls"]["name"] == settings.name == "wardcall.internal"
    assert cfg["tls"]["time_floor"] > 1_700_000_000


@pytest.mark.parametrize("table, problem", [
    ('terminals = "none"', 'must be "tls" or "plain"'),
    ('console = "ftp"', 'must be "https" or "http"'),
    ('name = "not a name"', "must be a DNS name"),
    ("renew_days = 500", "less than cert_days"),
    ("ca = 1", "unknown key 'ca'"),
])
def test_bad_tls_settings_name_the_place(tmp_path, table, problem):
    path = tmp_path / "ward.toml"
    path.write_text(f'[ward]\nname = "W"\n[tls]\n{table}\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "[tls]" in str(err.value) and problem in str(err.value), str(err.value)
