# Pin map: ESP32 DevKitC (ESP32-WROOM-32). The application names pins only through this module.
# Inputs are active low with the internal pull-up; strapping pins (0, 2, 5, 12, 15) and the
# input-only pins 34-39 (no pull-ups) are avoided.
try:
    from micropython import const
except ImportError:
    def const(x):
        return x

NAME = "esp32"
CALL = const(32)           # patient call button (bed handset or panel)
PRESENCE = const(33)       # green presence / cancel button (staff)
ASSIST = const(25)         # staff assist button
CODE = const(26)           # code blue button
CORD_PULL = const(27)      # bathroom pull-cord contact: closed (low) while pulled
CORD_LOOP = const(14)      # cord supervision loop: low while the cord is plugged in and intact
LAMP_REASSURE = const(19)  # reassurance lamp at the bed (red)
LAMP_PRESENCE = const(21)  # presence lamp (green)
BUZZER = const(22)         # piezo buzzer, driven by PWM
DOME = const(23)           # dome light over the door; -1 where not fitted
# badge reader: an MFRC522 module on SPI, as (SPI bus, SCK, MOSI, MISO, CS (the module's SDA),
# RST or -1 if not wired); None on a board without a reader (plain presence). MISO on the
# input-only GPIO 34; GPIO 16/17 are free on the WROOM-32 (a WROVER's PSRAM would take them).
BADGE = (1, 18, 13, 34, 16, 17)
