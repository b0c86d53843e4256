# Pin map: the emulated board. Same pin numbers as the ESP32 DevKitC, so that the firmware sees
# an ESP32-like board; the emulator's control channel names inputs and outputs by these names.
try:
    from micropython import const
except ImportError:
    def const(x):
        return x

NAME = "emulator"
CALL = const(32)
PRESENCE = const(33)
ASSIST = const(25)
CODE = const(26)
CORD_PULL = const(27)
CORD_LOOP = const(14)
LAMP_REASSURE = const(19)
LAMP_PRESENCE = const(21)
BUZZER = const(22)
DOME = const(23)
# badge reader (an emulated MFRC522 on the emulated SPI bus, boards/emulator/shims/_emu_mfrc522.py):
# (SPI bus, SCK, MOSI, MISO, CS, RST), as on the ESP32 DevKitC
BADGE = (1, 18, 13, 34, 16, 17)
