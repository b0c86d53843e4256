"""Helpers for the over-the-air update tests: firmware copies with a changed version or a bug."""
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"


@pytest.fixture
def firmware_copy(tmp_path):
    """firmware_copy(version, patches={lib path: (old, new) | text}) -> folder: a copy of firmware/
    with lib/version.py saying `version` and the given changes."""
    n = [0]

    def make(version, patches=None):
        n[0] += 1
        dst = tmp_path / ("fw%d" % n[0])
        shutil.copytree(FIRMWARE, dst, ignore=shutil.ignore_patterns("__pycache__"))
        (dst / "lib" / "version.py").write_text('VERSION = "%s"\n' % version)
        for rel, change in (patches or {}).items():
            p = dst / rel
            if isinstance(change, tuple):
                text = p.read_text()
                assert text.count(change[0]) == 1, (rel, change[0])
                p.write_text(text.replace(change[0], change[1]))
            else:
                p.write_text(change)
        return dst

    return make
