"""wardcall.deploy: from an ESP32 in a box to a registered bed terminal.

- flash:   erase and write MicroPython with esptool (offsets from boards/<board>/flash.json)
- board:   talk to a board through the real `mpremote` command (serial port or socket://)
- build:   stage the firmware for a board (.mpy via mpy-cross, boot.py/main.py as .py)
- deploy:  one board: detect, check, maintenance mode, copy what changed, config, reset, online
- fleet:   many boards in parallel from a plan file, progress bar and summary table
- monitor: the board's serial console through pyserial
- cli:     register(subparsers) adds flash, deploy, fleet deploy, monitor to the wardcall CLI
"""
from .errors import DeployError

__all__ = ["DeployError"]
