"""Where the repository's firmware and board files are (overridable for tests)."""
import os
from pathlib import Path

REPO = Path(os.environ.get("WARDCALL_ROOT") or Path(__file__).resolve().parents[3])
BOARDS = REPO / "boards"
FIRMWARE = REPO / "firmware"
BUILD = REPO / "build" / "deploy"

# Boards that exist as real hardware (boards/<name>/flash.json) and the emulated one.
REAL_BOARDS = ("esp32", "esp32c3", "esp32s3")


def board_dir(board):
    return BOARDS / board
