"""The server's checks end to end: a real `wardcall serve` holding the ward's public key, an emulated
board running the real firmware online at it. A package that is unsigned, signed with another
key, changed after signing, or older than what the terminal runs is refused by the API with a
sentence saying which, before a single OTA command reaches the terminal; a good one installs."""
import base64

import pytest

from tests.fixtures.host import TECH
from tests.fixtures.ward import SyncApi
from wardcall.ota import OtaError, Package, UpdateClient, build_package, signing
from wardcall.ota.cli import sign_for_update

from . import signed
from .signed import OTHER_KEY

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


def lib_files(board):
    return {p.name: p.read_bytes() for p in (board.flash_dir / "lib").iterdir() if p.is_file()}


def refused(client, package_or_body, dev):
    with pytest.raises(OtaError) as exc:
        if isinstance(package_or_body, Package):
            client.start(package_or_body, [dev], 20, 1, False, False)
        else:
            client.post_update({"package": package_or_body, "devices": [dev], "trial_s": 20})
    return exc.value


def test_server_refuses_unsigned_forged_tampered_and_older_packages(ota_ward, firmware_copy):
    rig = ota_ward(n=1)
    dev, board = rig.devices[0], rig.board(0)
    before = lib_files(board)
    client = UpdateClient(rig.ward.api_url, *TECH)
    client.login()
    fw = firmware_copy("0.2.0-signed")
    unsigned = build_package(fw, compile=True)        # as `wardcall update` builds it
    good = sign_for_update(rig.ward_config, unsigned)
    forged = signing.sign(unsigned, OTHER_KEY, good.serial)
    changed = signed.tampered(good, "lib/app.mpy", b"import os\n")
    body = good.to_json()                     # the signed manifest kept, one file's bytes changed
    body["files"] = [[p, base64.b64encode(b"import os\n").decode() if p == "lib/app.mpy" else d] for p, d in body["files"]]
    errors = {name: refused(client, pkg, dev) for name, pkg in
              (("unsigned", unsigned.to_json()), ("forged", forged), ("changed", changed), ("manifest", body))}
    kid = signing.key_id(signed.WARD_KEY.public_key())
    assert "the package is not signed" in str(errors["unsigned"])
    assert f"signed with another key ({forged.kid}); this ward's update key is {kid}" in str(errors["forged"])
    assert "signature does not verify with this ward's update key" in str(errors["changed"])
    assert "lib/app.mpy was changed after the package was signed" in str(errors["manifest"])
    assert all(e.status == 400 for e in errors.values()), errors
    # nothing reached the terminal
    assert client.jobs() == []
    assert "wardcall: ota:" not in board.console()
    assert lib_files(board) == before and not (board.flash_dir / ".ota").exists()

    # the good one installs; afterwards an older signed package is a downgrade
    job = client.start(good, [dev], 20, 1, False, False)
    try:
        final = rig.wait(lambda: (lambda j: j if j["done"] else None)(client.job(job["job"])), 60, "the update done")
    except AssertionError:
        raise AssertionError(board.console()[-5000:])
    assert final["devices"][0]["state"] == "ok", (final, board.console()[-3000:])
    older = signing.sign(build_package(firmware_copy("0.3.0-old")), signed.WARD_KEY, good.serial - 1)
    err = refused(client, older, dev)
    assert f"downgrade refused: package serial {good.serial - 1} is not newer than the serial {good.serial} " \
           f"installed on {dev}" in str(err)
    assert err.status in (400, 409)
    assert len(client.jobs()) == 1
    console = board.console()
    assert console.count("receiving firmware") == 1 and "0.3.0-old" not in console

    # a server that forgets what the terminals run (restarted) asks the terminal before sending
    rig.server.restart()
    rig.api.close()
    rig.api = SyncApi(rig.ward.api_url)          # the console sessions ended with the old server
    rig.wait_online([dev])
    client = UpdateClient(rig.ward.api_url, *TECH)
    client.login()
    job = client.start(older, [dev], 20, 1, False, False)
    final = rig.wait(lambda: (lambda j: j if j["done"] else None)(client.job(job["job"])), 30, "the job done")
    d = final["devices"][0]
    assert d["state"] == "failed" and f"downgrade: serial {good.serial - 1} is not newer than the installed " \
                                      f"serial {good.serial}" in d["detail"]
    assert board.console().count("receiving firmware") == 1
    assert rig.terminal(dev)["firmware"] == "0.2.0-signed"


def test_terminal_without_the_ward_key_is_not_sent_anything(ota_ward, firmware_copy):
    rig = ota_ward(n=1, board_key=False)
    dev, board = rig.devices[0], rig.board(0)
    client = UpdateClient(rig.ward.api_url, *TECH)
    client.login()
    job = client.start(sign_for_update(rig.ward_config, build_package(firmware_copy("0.2.0-nokey"), compile=True)),
                       [dev], 20, 1, False, False)
    final = rig.wait(lambda: (lambda j: j if j["done"] else None)(client.job(job["job"])), 30, "the job done")
    d = final["devices"][0]
    assert d["state"] == "failed" and "no update key installed: deploy it" in d["detail"], d
    assert "receiving firmware" not in board.console()
