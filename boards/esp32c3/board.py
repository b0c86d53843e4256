# Pin map: ESP32-C3 DevKitM-1. The application names pins only through this module.
# Inputs are active low with the internal pull-up; GPIO 8 and 9 (strapping, boot button)
# and 20/21 (UART0) are avoided.
try:
    from micropython import const
except ImportError:
    def const(x):
        return x

NAME = "esp32c3"
CALL = const(0)
PRESENCE = const(1)
ASSIST = const(3)
CODE = const(4)
CORD_PULL = const(5)
CORD_LOOP = const(6)
LAMP_REASSURE = const(7)
LAMP_PRESENCE = const(10)
BUZZER = const(18)
DOME = const(19)
# badge reader: none. The DevKitM-1 breaks out GPIO 0-10 and 18-21; with the inputs and lamps
# above and UART0 (20/21, the USB console) only GPIO 2, 8 and 9 are left, and an MFRC522 on
# SPI needs four (SCK, MOSI, MISO, CS): plain presence only. A reader here would need a pin
# freed (docs/DEPLOY.md, Wiring).
BADGE = None
