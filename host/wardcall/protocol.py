"""The shared wire protocol, loaded from firmware/lib/wardproto.py (the one implementation).

The host must run the very file the terminals run, so it is loaded from the repository path and
registered as the module ``wardproto``; nothing here re-implements a byte of it.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from .checkout import FIRMWARE

WARDPROTO_PATH = FIRMWARE / "lib" / "wardproto.py"


def _load() -> ModuleType:
    existing = sys.modules.get("wardproto")
    if existing is not None and Path(getattr(existing, "__file__", "") or "").resolve() == WARDPROTO_PATH.resolve():
        return existing
    spec = importlib.util.spec_from_file_location("wardproto", WARDPROTO_PATH)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the wire protocol from {WARDPROTO_PATH}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["wardproto"] = module
    spec.loader.exec_module(module)
    return module


wardproto = _load()
ProtocolError = wardproto.ProtocolError

KIND_NAMES: dict[int, str] = {kind: spec[0] for kind, spec in wardproto.KINDS.items()}
KIND_BY_NAME: dict[str, int] = {name: kind for kind, name in KIND_NAMES.items()}


def alarm_priority(kind: int) -> int:
    """IEC 60601-1-8 alarm priority (wardproto.ALARM_*) of a call kind."""
    return wardproto.KINDS[kind][1]
