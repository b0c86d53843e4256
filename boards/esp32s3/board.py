# Pin map: ESP32-S3 DevKitC-1. The application names pins only through this module.
# Inputs are active low with the internal pull-up; strapping pins (0, 3, 45, 46) and the
# USB pins 19/20 are avoided.
try:
    from micropython import const
except ImportError:
    def const(x):
        return x

NAME = "esp32s3"
CALL = const(4)
PRESENCE = const(5)
ASSIST = const(6)
CODE = const(7)
CORD_PULL = const(15)
CORD_LOOP = const(16)
LAMP_REASSURE = const(17)
LAMP_PRESENCE = const(18)
BUZZER = const(8)
DOME = const(9)
# badge reader: an MFRC522 module on SPI, as (SPI bus, SCK, MOSI, MISO, CS (the module's SDA),
# RST or -1 if not wired); None on a board without a reader (plain presence). SPI(1) is the
# S3's SPI2 (FSPI), whose own pins are 10-13.
BADGE = (1, 12, 11, 13, 10, 14)
