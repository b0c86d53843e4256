"""The checkout's firmware and board folders (wardcall.paths) and the boards deploy knows."""
from ..paths import BOARDS, BUILD, FIRMWARE, REPO  # noqa: F401  (deploy modules use paths.X)

# Boards that exist as real hardware (boards/<name>/flash.json) and the emulated one.
REAL_BOARDS = ("esp32", "esp32c3", "esp32s3")


def board_dir(board):
    return BOARDS / board
