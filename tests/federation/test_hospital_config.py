"""hospital.toml: read as written (the demo's own), and every mistake named."""
from __future__ import annotations

from pathlib import Path

import pytest

from wardcall.config import ConfigError
from wardcall.federation.demo import HospitalDemo, hospital_toml
from wardcall.federation.hospital_config import load_hospital
from wardcall.protocol import KIND_BY_NAME


def test_the_demo_hospital_reads_back(tmp_path: Path):
    path = tmp_path / "hospital.toml"
    path.write_text(hospital_toml("nats://127.0.0.1:4222", 7480))
    config = load_hospital(path)
    assert config.hub_urls == ("nats://127.0.0.1:4222",) and set(config.wards) == {"a", "b"}
    team = config.teams["rrt"]
    assert team.kinds == {KIND_BY_NAME["code_blue"], KIND_BY_NAME["staff_assist"]}
    assert [t.id for t in config.teams_of("drx")] == ["rrt"] and config.teams_of("sup") == []
    # HTTPS by default, from the console's own CA beside its TOML
    assert config.tls.console == "https" and config.tls.ca_cert == tmp_path / "hospital.ca.pem"


GOOD = hospital_toml("nats://127.0.0.1:4222", 7480)


@pytest.mark.parametrize("change, place, words", [
    (('"nats://127.0.0.1:4222"', '"http://hub"'), "[hospital] hub_urls", "nats://"),
    (('[wards.a]', '[wards."Ward A"]'), '[wards.Ward A]', "lower-case"),
    (('members = ["drx", "rny"]', 'members = ["drx", "nobody"]'), "[teams.rrt] members", "'nobody' is not a user"),
    (('kinds = ["code_blue", "staff_assist"]', 'kinds = ["cardiac"]'), "[teams.rrt] kinds", "call kinds"),
    (('role = "team"', 'role = "doctor"'), "[users.drx] role", "unknown role"),
    (('[wards.a]', '[tls]\nconsole = "ftp"\n\n[wards.a]'), "[tls] console", '"https" or "http"'),
    (('[wards.a]', '[tls]\nterminals = "plain"\n\n[wards.a]'), "[tls] terminals", "no terminal connects"),
    (('[wards.a]', '[tls]\ncert_file = "x.pem"\n\n[wards.a]'), "[tls]", "cert_file"),
])
def test_mistakes_are_named(tmp_path: Path, change, place, words):
    path = tmp_path / "hospital.toml"
    path.write_text(GOOD.replace(*change, 1))
    with pytest.raises(ConfigError) as err:
        load_hospital(path)
    assert err.value.place == place and words in err.value.problem


def test_the_demo_prompt_wants_a_ward_first(tmp_path: Path):
    demo = HospitalDemo(tmp_path, beds=1, api_port=7380)
    assert "give a ward first" in demo.command("call 1")
    assert "give a ward first" in demo.command("c call 1")
    assert "hub stop|start" in demo.command("help")


def test_the_hub_link_settings(tmp_path: Path):
    from wardcall.federation.hospital import plain_hub_urls
    ca = tmp_path / "hub-ca.pem"
    ca.write_text("a CA\n")
    secret = tmp_path / "hub-password"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    keys = 'hub_ca = "hub-ca.pem"\nhub_user = "hospital"\nhub_password_file = "hub-password"\n'
    path = tmp_path / "hospital.toml"
    path.write_text(GOOD.replace('"nats://127.0.0.1:4222"', '"tls://hub-1:4222"')
                    .replace("api_port = 7480", "api_port = 7480\n" + keys, 1))
    config = load_hospital(path)
    assert (config.hub_ca, config.hub_user, config.hub_password) == (ca, "hospital", "s3cret")
    for text, place, words in (
            (GOOD.replace("api_port = 7480", "api_port = 7480\n" + keys, 1), "[hospital] hub_urls", "every hub address is tls://"),
            (GOOD.replace('"nats://127.0.0.1:4222"', '"tls://hub-1:4222"'), "[hospital] hub_ca", "is missing"),
            (GOOD.replace("api_port = 7480", 'api_port = 7480\nhub_user = "x"', 1), "[hospital] hub_user", "go together")):
        path.write_text(text)
        with pytest.raises(ConfigError) as err:
            load_hospital(path)
        assert err.value.place == place and words in err.value.problem, err.value
    secret.chmod(0o644)
    path.write_text(GOOD.replace('"nats://127.0.0.1:4222"', '"tls://hub-1:4222"').replace("api_port = 7480", "api_port = 7480\n" + keys, 1))
    with pytest.raises(ConfigError) as err:
        load_hospital(path)
    assert "chmod 600" in err.value.problem
    # a hub in clear is alarmed when it is not on this machine
    assert plain_hub_urls(("nats://127.0.0.1:4222", "nats://hub-2:4222", "tls://hub-3:4222")) == ["nats://hub-2:4222"]
