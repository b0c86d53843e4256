"""Protocol tests: wardproto is imported from firmware/lib, the very file the terminals run."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for p in (ROOT / "firmware" / "lib", ROOT / "tests" / "vectors"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
