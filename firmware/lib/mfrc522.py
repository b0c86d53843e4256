# NXP MFRC522 (13.56 MHz ISO/IEC 14443 A reader IC) over SPI: the part a badge reader needs,
# written from the NXP data sheet (SPI framing 8.1.2, registers 9, commands 10) and
# ISO/IEC 14443-3 (WUPA, anticollision, SELECT, HLTA, CRC_A). wake() asks every card in the
# field to answer (WUPA: halted ones too); select() resolves collisions bit by bit, selects one
# card through its cascade levels (UIDs of 4, 7 or 10 bytes) and halts it again, so the next
# wake() finds it again while it stays on the reader. Buffers are preallocated; a transceive
# waits for the chip at most _WAIT_US (the chip's own timer ends an unanswered frame in 2 ms).
from micropython import const
import time
import asyncio

# registers (data sheet 9.2)
_COMMAND = const(0x01)
_COM_IRQ = const(0x04)
_ERROR = const(0x06)
_FIFO_DATA = const(0x09)
_FIFO_LEVEL = const(0x0A)
_CONTROL = const(0x0C)
_BIT_FRAMING = const(0x0D)
_COLL = const(0x0E)
_MODE = const(0x11)
_TX_CONTROL = const(0x14)
_TX_ASK = const(0x15)
_T_MODE = const(0x2A)
_T_PRESCALER = const(0x2B)
_T_RELOAD_H = const(0x2C)
_T_RELOAD_L = const(0x2D)
_VERSION = const(0x37)
# commands (10.3) and CommandReg's PowerDown bit (1 until the chip is awake after a reset)
_IDLE = const(0x00)
_TRANSCEIVE = const(0x0C)
_SOFT_RESET = const(0x0F)
_POWER_DOWN = const(0x10)
# ComIrqReg: RxIRq | IdleIRq end a received frame, TimerIRq an unanswered one
_DONE_IRQ = const(0x30)
_TIMER_IRQ = const(0x01)
# ErrorReg: CollErr; BufferOvfl | ParityErr | ProtocolErr spoil a frame
_COLL_ERR = const(0x08)
_BAD_ERR = const(0x13)
_COLL_NOT_VALID = const(0x20)   # CollReg: no collision position
_START_SEND = const(0x80)       # BitFramingReg
_TIMER_TICKS = const(80)        # 25 us ticks (prescaler 169: 13.56 MHz / 339 = 40 kHz): 2 ms
_PRESCALER = const(0xA9)
_WAIT_US = const(5000)
_WAKE_MS = const(50)
_MAX_COLL = const(8)            # collisions resolved per cascade level (a card per round)
# ISO/IEC 14443-3
_WUPA = const(0x52)             # 7-bit short frame
_SEL1 = const(0x93)             # SEL of cascade level 1; 0x95, 0x97 for levels 2 and 3
_NVB_SELECT = const(0x70)
_CT = const(0x88)               # cascade tag: the UID goes on at the next level
_SAK_MORE = const(0x04)
_HLTA = const(0x50)
# transceive results
_OK = const(0)
_NONE = const(1)                # no answer: no card
_COLLIDED = const(2)
_BAD = const(3)
_DEAD = const(4)                 # the chip does not answer


def crc_a(buf, n):
    """ISO/IEC 14443-3 CRC_A (x^16 + x^12 + x^5 + 1, preset 0x6363) of buf[:n]; sent LSB first."""
    crc = 0x6363
    for i in range(n):
        b = (buf[i] ^ crc) & 0xFF
        b = (b ^ (b << 4)) & 0xFF
        crc = (crc >> 8) ^ (b << 8) ^ (b << 3) ^ (b >> 4)
    return crc


class Mfrc522:
    def __init__(self, spi, cs, rst=None):
        self._spi = spi
        self._cs = cs.value
        self._rst = rst
        self._b = bytearray(2)          # one register access: address, data
        self._tx = bytearray(9)         # longest frame: SELECT (SEL, NVB, 4 + BCC, CRC_A)
        self._rx = bytearray(16)
        self._cl = bytearray(5)         # this cascade level's UID bytes and BCC
        self.rx_n = 0
        self.rx_last = 0                # valid bits in the last byte received (0: all 8)
        cs.value(1)

    # --- registers (SPI mode 0, MSB first; address byte: read bit 7, address in bits 6..1) ---
    def _wr(self, reg, val):
        b = self._b
        b[0] = reg << 1
        b[1] = val
        self._cs(0)
        self._spi.write(b)
        self._cs(1)

    def _rd(self, reg):
        b = self._b
        b[0] = 0x80 | (reg << 1)
        b[1] = 0
        self._cs(0)
        self._spi.write_readinto(b, b)
        self._cs(1)
        return b[1]

    async def init(self):
        """Reset and set the chip up; its version byte, or 0 if nothing answers."""
        if self._rst is not None:               # a hard reset when the RST line is wired
            self._rst.value(0)
            await asyncio.sleep_ms(1)
            self._rst.value(1)
        self._wr(_COMMAND, _SOFT_RESET)
        for _ in range(_WAKE_MS):
            await asyncio.sleep_ms(1)
            if not self._rd(_COMMAND) & _POWER_DOWN:
                break
        version = self._rd(_VERSION)
        if version == 0 or version == 0xFF:     # MISO held low or floating high
            return 0
        self._wr(_T_MODE, 0x80)                 # TAuto: the timer starts as a frame ends
        self._wr(_T_PRESCALER, _PRESCALER)
        self._wr(_T_RELOAD_H, 0)
        self._wr(_T_RELOAD_L, _TIMER_TICKS)
        self._wr(_TX_ASK, 0x40)                 # 100 % ASK, as ISO/IEC 14443 A wants
        self._wr(_MODE, 0x3D)                   # CRC preset 6363h
        self._wr(_TX_CONTROL, self._rd(_TX_CONTROL) | 0x03)     # antenna drivers TX1, TX2 on
        if self._rd(_T_PRESCALER) != _PRESCALER:                # a register must read back
            return 0
        return version

    def _transceive(self, n, tx_last, rx_align):
        """Send self._tx[:n] (tx_last valid bits in its last byte, 0: 8) and receive the answer
        into self._rx, its first bit at bit rx_align of the first byte. A result code."""
        self._wr(_COMMAND, _IDLE)
        self._wr(_COM_IRQ, 0x7F)                # clear every interrupt request bit
        self._wr(_FIFO_LEVEL, 0x80)             # flush the FIFO
        tx = self._tx
        for i in range(n):
            self._wr(_FIFO_DATA, tx[i])
        self._wr(_COMMAND, _TRANSCEIVE)
        framing = (rx_align << 4) | tx_last
        self._wr(_BIT_FRAMING, _START_SEND | framing)
        t0 = time.ticks_us()
        while True:
            irq = self._rd(_COM_IRQ)
            if irq == 0xFF:                     # bit 7 reads 0 on a chip that answers
                return _DEAD
            if irq & _DONE_IRQ:
                break
            if irq & _TIMER_IRQ:
                self._wr(_BIT_FRAMING, framing)
                return _NONE
            if time.ticks_diff(time.ticks_us(), t0) > _WAIT_US:
                self._wr(_COMMAND, _IDLE)
                return _DEAD                     # its timer never ran out: not a working chip
        self._wr(_BIT_FRAMING, framing)
        err = self._rd(_ERROR)
        if err & _BAD_ERR:
            return _BAD
        n = self._rd(_FIFO_LEVEL) & 0x7F
        if n > len(self._rx):
            return _BAD
        rx = self._rx
        for i in range(n):
            rx[i] = self._rd(_FIFO_DATA)
        self.rx_n = n
        self.rx_last = self._rd(_CONTROL) & 0x07
        return _COLLIDED if err & _COLL_ERR else _OK

    def wake(self):
        """WUPA: 1 if any card answers (collisions included), 0 if none, -1 if the chip is dead."""
        self._tx[0] = _WUPA
        st = self._transceive(1, 7, 0)
        if st == _DEAD:
            return -1
        if st == _COLLIDED or (st == _OK and self.rx_n == 2 and self.rx_last == 0):
            return 1
        return 0

    async def select(self, uid):
        """After wake(): one card's UID into uid (10 bytes); its length (4, 7 or 10), 0 if the
        read failed, -1 if the chip is dead. The card is halted afterwards."""
        self._wr(_COLL, 0x00)                   # ValuesAfterColl 0: bits after a collision read 0
        n = 0
        cl = self._cl
        tx = self._tx
        rx = self._rx
        for level in range(3):
            st = self._anticollision(level)
            if st == _OK:
                tx[0] = _SEL1 + 2 * level
                tx[1] = _NVB_SELECT
                for i in range(5):
                    tx[2 + i] = cl[i]
                c = crc_a(tx, 7)
                tx[7] = c & 0xFF
                tx[8] = c >> 8
                st = self._transceive(9, 0, 0)
            if st == _DEAD:
                return -1
            if st != _OK or self.rx_n != 3 or crc_a(rx, 1) != rx[1] | (rx[2] << 8):
                return 0
            if not rx[0] & _SAK_MORE:           # the UID is complete
                for i in range(4):
                    uid[n + i] = cl[i]
                self._halt()
                return n + 4
            if cl[0] != _CT:
                return 0
            for i in range(3):
                uid[n + i] = cl[1 + i]
            n += 3
            await asyncio.sleep_ms(0)           # the other tasks run between cascade levels
        return 0

    def _anticollision(self, level):
        # cl = this level's 4 UID bytes and BCC, bit by bit: the cards answer the bits after
        # the `known` ones we send; on a collision, the cards with a 1 there are followed
        cl = self._cl
        tx = self._tx
        rx = self._rx
        for i in range(5):
            cl[i] = 0
        known = 0
        for _ in range(_MAX_COLL + 1):
            full = known >> 3
            extra = known & 7
            tx[0] = _SEL1 + 2 * level
            tx[1] = ((2 + full) << 4) | extra   # NVB: bytes (SEL and NVB included) and bits sent
            nb = full + (1 if extra else 0)
            for i in range(nb):
                tx[2 + i] = cl[i]
            st = self._transceive(2 + nb, extra, extra)
            if st != _OK and st != _COLLIDED:
                return st
            m = self.rx_n
            if full + m > 5 or m == 0:
                return _BAD
            keep = (1 << extra) - 1             # the known bits of the byte the answer starts in
            cl[full] = (cl[full] & keep) | (rx[0] & ~keep & 0xFF)
            for i in range(1, m):
                cl[full + i] = rx[i]
            if st == _OK:
                if full + m != 5 or self.rx_last or cl[0] ^ cl[1] ^ cl[2] ^ cl[3] != cl[4]:
                    return _BAD
                return _OK
            coll = self._rd(_COLL)
            if coll & _COLL_NOT_VALID:
                return _BAD
            # CollPos counts from bit 0 of the first byte received, RxAlign included; 0 = 32
            bit = (full << 3) + ((coll & 0x1F) or 32) - 1
            if bit < known or bit >= 32:
                return _BAD
            byte = bit >> 3
            cl[byte] = (cl[byte] & ((1 << (bit & 7)) - 1)) | (1 << (bit & 7))
            for i in range(byte + 1, 5):
                cl[i] = 0
            known = bit + 1
        return _BAD

    def _halt(self):
        tx = self._tx
        tx[0] = _HLTA
        tx[1] = 0
        c = crc_a(tx, 2)
        tx[2] = c & 0xFF
        tx[3] = c >> 8
        self._transceive(4, 0, 0)               # a halted card does not answer: the timer ends it
