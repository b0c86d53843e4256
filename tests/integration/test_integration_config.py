"""The ward TOML's [integrations.*] tables: every setting read, every mistake one clear line."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wardcall.config import ConfigError, load_config

BASE = """\
[ward]
name = "Ward 7"

[rooms.101]
beds = ["1", "2"]

[users.alice]
password = "scrypt$16384$8$1$x$y"
"""


def load(tmp_path: Path, extra: str):
    path = tmp_path / "ward.toml"
    path.write_text(BASE + extra)
    return load_config(path)


def test_every_setting_is_read(tmp_path):
    cfg = load(tmp_path, """
[integrations.acm]
host = "am.hospital"
port = 3000
unit = "CARD7"
ack_timeout_s = 3
retry_s = 1.5
keepalive_s = 20
status_host = "0.0.0.0"
status_port = 3001
callbacks = { "101" = "4101" }
[integrations.adt]
port = 2576
display = "name"
[integrations.espa]
device = "/dev/ttyUSB0"
baudrate = 2400
address = "2"
numbers = { code_blue = "999" }
handsets = { alice = "201" }
retries = 5
""").integrations
    assert (cfg.acm.host, cfg.acm.port, cfg.acm.unit, cfg.acm.keepalive_s, cfg.acm.callbacks) == \
        ("am.hospital", 3000, "CARD7", 20, {"101": "4101"})
    assert (cfg.acm.status_host, cfg.acm.status_port) == ("0.0.0.0", 3001)
    assert (cfg.adt.port, cfg.adt.display, cfg.adt.host) == (2576, "name", "127.0.0.1")
    assert (cfg.espa.baudrate, cfg.espa.address, cfg.espa.numbers, cfg.espa.handsets, cfg.espa.retries) == \
        (2400, "2", {"code_blue": "999"}, {"alice": "201"}, 5)
    assert cfg.queue_path == tmp_path / "ward.integrations.db"


def test_no_integrations_is_none(tmp_path):
    cfg = load(tmp_path, "").integrations
    assert not cfg.any


@pytest.mark.parametrize("extra, place, problem", [
    ('[integrations.acm]\nhost = "x"\nport = 1\ncolor = "red"\n', "[integrations.acm]", "unknown key 'color'"),
    ('[integrations.acm]\nhost = "x"\n', "[integrations.acm] port", "is missing"),
    ('[integrations.acm]\nhost = "x"\nport = 70000\n', "[integrations.acm] port", "outside 0-65535"),
    ('[integrations.acm]\nhost = "x"\nport = 1\nretry_s = 0\n', "[integrations.acm] retry_s", "more than"),
    ('[integrations.acm]\nhost = "x"\nport = 1\ncallbacks = { "999" = "1" }\n', "[integrations.acm] callbacks", "'999'"),
    ('[integrations.acm]\nhost = "x"\nport = 1\nsending_application = "A|B"\n', "[integrations.acm] sending_application", "may not"),
    ('[integrations.adt]\ndisplay = "photo"\n', "[integrations.adt] display", "initials, name, id"),
    ('[integrations.espa]\ndevice = "/dev/x"\n', "[integrations.espa] numbers", "is needed"),
    ('[integrations.espa]\ndevice = "/dev/x"\nnumbers = { sneeze = "1" }\n', "[integrations.espa] numbers", "'sneeze'"),
    ('[integrations.espa]\ndevice = "/dev/x"\nhandsets = { bob = "1" }\n', "[integrations.espa] handsets", "'bob'"),
    ('[integrations.espa]\ndevice = "/dev/x"\nnumbers = { patient = "1" }\naddress = "0"\n', "[integrations.espa] address", "may not"),
    ('[integrations.fax]\n', "[integrations]", "unknown key 'fax'"),
])
def test_mistakes_name_the_place(tmp_path, extra, place, problem):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, extra)
    assert caught.value.place == place and problem in caught.value.problem, str(caught.value)


def test_check_says_it_in_one_line(tmp_path):
    path = tmp_path / "ward.toml"
    path.write_text(BASE + '[integrations.adt]\ndisplay = "photo"\n')
    done = subprocess.run([sys.executable, "-m", "wardcall.cli", "check", "--config", str(path)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith("[integrations.adt] display: must be one of initials, name, id, not 'photo'")
