"""The shared wire protocol, loaded from firmware/lib/wardproto.py and firmware/lib/otaproto.py
(the one implementation of each; otaproto's sentences are in firmware/lib/otatext.py).

The host must run the very files the terminals run, so they are loaded from the repository path
and registered as the modules ``wardproto`` and ``otaproto``; nothing here re-implements a byte.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from .checkout import FIRMWARE

WARDPROTO_PATH = FIRMWARE / "lib" / "wardproto.py"
OTAPROTO_PATH = FIRMWARE / "lib" / "otaproto.py"
OTATEXT_PATH = FIRMWARE / "lib" / "otatext.py"


def _load(name: str, path: Path) -> ModuleType:
    existing = sys.modules.get(name)
    if existing is not None and Path(getattr(existing, "__file__", "") or "").resolve() == path.resolve():
        return existing
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {name} from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


wardproto = _load("wardproto", WARDPROTO_PATH)
otaproto = _load("otaproto", OTAPROTO_PATH)      # after wardproto: its chunk_size() imports it
_load("otatext", OTATEXT_PATH)                   # after otaproto, which it imports; otaproto.describe() uses it
ProtocolError = wardproto.ProtocolError

KIND_NAMES: dict[int, str] = {kind: spec[0] for kind, spec in wardproto.KINDS.items()}
KIND_BY_NAME: dict[str, int] = {name: kind for kind, name in KIND_NAMES.items()}


def alarm_priority(kind: int) -> int:
    """IEC 60601-1-8 alarm priority (wardproto.ALARM_*) of a call kind."""
    return wardproto.KINDS[kind][1]


def fit_text(text: str, limit: int = wardproto.MAX_TEXT) -> str:
    """text cut to at most `limit` bytes of UTF-8, between characters: what a text field of a
    frame holds (a name of any script is longer in bytes than in characters)."""
    raw = text.encode()
    return text if len(raw) <= limit else raw[:limit].decode(errors="ignore")
