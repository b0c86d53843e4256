"""`wardcall deploy` installs the ward's over-the-air update public key on the board (otakey.json,
outside everything an update may write) and keeps the terminal's installed update serial across a
deploy; without a ward key the deploy says that the terminal will refuse every update."""
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from wardcall.config import load_config
from wardcall.deploy.deploy import DeployRequest, deploy
from wardcall.deploy.ward_bridge import ota_key
from wardcall.ota import signing
from wardcall.protocol import otaproto

KEYS = Path(__file__).resolve().parents[1] / "vectors"


def ward_public_key():
    return serialization.load_pem_private_key((KEYS / "ota_test_key_a.pem").read_bytes(), None).public_key()


def run(board, firmware, configs, **kw):
    return deploy(DeployRequest(board.repl_url, "bed-1", configs, firmware_dir=firmware, wait=False,
                                board="emulator", **kw))


@pytest.mark.timeout(120)
def test_deploy_installs_the_update_key_and_keeps_the_serial(deployed_board, firmware, configs):
    b = deployed_board
    public = ward_public_key()
    # the terminal had taken updates before: its serial floor and a finished update's state
    (b.flash_dir / ".ota").mkdir(exist_ok=True)
    (b.flash_dir / ".ota" / "installed.json").write_text(json.dumps({"serial": 1700000000, "v": "0.1.9"}))
    (b.flash_dir / ".ota" / "state.json").write_text(json.dumps({"s": "confirmed", "v": "0.1.9"}))
    r = run(b, firmware, configs, ota_key=signing.board_key_text(public))
    assert r.ok and r.copied == ["/otakey.json"] and r.warnings == []
    n, k = otaproto.parse_key((b.flash_dir / "otakey.json").read_text())
    assert n == public.public_numbers().n and k == 384
    assert otaproto.key_id(n) == signing.key_id(public)
    assert json.loads((b.flash_dir / ".ota" / "installed.json").read_text())["serial"] == 1700000000
    assert not (b.flash_dir / ".ota" / "state.json").exists()       # a deploy over USB wins
    again = run(b, firmware, configs, ota_key=signing.board_key_text(public))
    assert again.ok and again.copied == []


@pytest.mark.timeout(120)
def test_deploy_without_a_ward_key_warns(deployed_board, firmware, configs):
    r = run(deployed_board, firmware, configs)
    assert r.ok and not (deployed_board.flash_dir / "otakey.json").exists()
    assert len(r.warnings) == 1 and "refuse every update" in r.warnings[0] and "wardcall update keygen" in r.warnings[0]


def test_the_key_comes_from_the_ward_configuration(make_ward):
    ward = make_ward(terminals=1)
    config = load_config(ward.config_path)
    assert ota_key(config) is None                        # no key made yet
    kid = signing.generate_keys(config.ota.private_key, config.ota.public_key)
    assert config.ota.private_key.stat().st_mode & 0o077 == 0
    text = ota_key(config)
    assert otaproto.key_id(otaproto.parse_key(text)[0]) == kid
    # the private key is never what goes to a board
    assert sorted(json.loads(text)) == ["e", "n"]
