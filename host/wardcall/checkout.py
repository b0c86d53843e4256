"""Where the checkout's parts are: the host runs from a wardcall checkout, whose firmware/ it
loads the protocol from and deploys to boards, and whose boards/ hold pin maps and the emulator."""
import os
from pathlib import Path

# host/wardcall/checkout.py -> the checkout is three levels up; WARDCALL_ROOT points elsewhere
REPO = Path(os.environ.get("WARDCALL_ROOT") or Path(__file__).resolve().parents[2])
BOARDS = REPO / "boards"
FIRMWARE = REPO / "firmware"
BUILD = REPO / "build" / "deploy"

# Boards that exist as real hardware (boards/<name>/flash.json); "emulator" is the emulated one.
REAL_BOARDS = ("esp32", "esp32c3", "esp32s3")
