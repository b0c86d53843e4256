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
