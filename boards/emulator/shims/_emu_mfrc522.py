# Emulated board: a virtual NXP MFRC522 on the emulated SPI bus, and the ISO/IEC 14443 A cards
# in its field. MicroPython only; imports nothing of the emulator, so the firmware's unit tests
# (tests/firmware/shims/machine.py) put it on their SPI bus too.
#
# The chip: its registers as the data sheet gives them (reset values, write-1-to-clear IRQ
# bits with Set1, FIFO with flush and level, soft reset with the PowerDown bit, CalcCRC, the
# version 0x92), SPI frames as in 8.1.2 (address byte: bit 7 read, address in bits 6..1; in a
# read frame every byte is the next address and MISO answers the previous one, in a write frame
# every byte is data for the address), and Transceive started by BitFramingReg's StartSend:
# the frame goes to the cards only with the antenna on (TxControlReg) and 100 % ASK
# (TxASKReg), and an unanswered one sets TimerIRq only if the timer is set up (TAuto and a
# reload value), as a real chip's would. Answers of several cards are merged bit by bit:
# CollErr, CollPos (counted from bit 0 of the first FIFO byte, RxAlign included; 0 = 32nd),
# CollPosNotValid, and bits after the collision cleared while ValuesAfterColl is 0.
# The cards: IDLE / READY / ACTIVE / HALT as in ISO/IEC 14443-3, REQA and WUPA (ATQA by UID
# size), anticollision and SELECT per cascade level (cascade tag 0x88, BCC, SAK with CRC_A;
# a SELECT's CRC_A is checked), HLTA. Everything answers at once (no RF timing).
# dead: None (the chip answers), or the byte MISO reads instead (0x00 or 0xFF); the RST line
# held low (hard power-down) reads 0x00; its rising edge resets the chip.
from micropython import const

_COMMAND = const(0x01)
_COM_IRQ = const(0x04)
_DIV_IRQ = const(0x05)
_ERROR = const(0x06)
_STATUS1 = const(0x07)
_FIFO_DATA = const(0x09)
_FIFO_LEVEL = const(0x0A)
_CONTROL = const(0x0C)
_BIT_FRAMING = const(0x0D)
_COLL = const(0x0E)
_MODE = const(0x11)
_TX_CONTROL = const(0x14)
_TX_ASK = const(0x15)
_CRC_H = const(0x21)
_CRC_L = const(0x22)
_T_MODE = const(0x2A)
_T_RELOAD_H = const(0x2C)
_T_RELOAD_L = const(0x2D)
_VERSION = const(0x37)
_RESET_VALUES = ((_COMMAND, 0x20), (0x02, 0x80), (_COM_IRQ, 0x14), (_STATUS1, 0x21), (0x0B, 0x08),
                 (_CONTROL, 0x10), (_COLL, 0xA0), (_MODE, 0x3F), (_TX_CONTROL, 0x80), (0x16, 0x10),
                 (0x17, 0x84), (0x18, 0x84), (0x19, 0x4D), (0x1C, 0x62), (0x1F, 0xEB), (_CRC_H, 0xFF),
                 (_CRC_L, 0xFF), (0x24, 0x26), (0x26, 0x48), (0x27, 0x88), (0x28, 0x20), (0x29, 0x20))
_CALC_CRC = const(0x03)
_TRANSCEIVE = const(0x0C)
_SOFT_RESET = const(0x0F)
_CRC_PRESETS = (0x0000, 0x6363, 0xA671, 0xFFFF)
VERSION = 0x92

IDLE = const(0)
READY = const(1)
ACTIVE = const(2)
HALT = const(3)


def crc_a(data, preset=0x6363):
    crc = preset
    for x in data:
        b = (x ^ crc) & 0xFF
        b = (b ^ (b << 4)) & 0xFF
        crc = (crc >> 8) ^ (b << 8) ^ (b << 3) ^ (b >> 4)
    return crc


def _with_crc(data):
    c = crc_a(data)
    return bytes(data) + bytes((c & 0xFF, c >> 8))


class Card:
    """One ISO/IEC 14443 A card (PICC) with a UID of 4, 7 or 10 bytes."""

    def __init__(self, uid):
        if len(uid) not in (4, 7, 10):
            raise ValueError("a UID has 4, 7 or 10 bytes")
        self.uid = bytes(uid)
        self.levels = (len(uid) - 4) // 3          # cascade levels after the first: 0, 1, 2
        self.state = IDLE
        self.home = IDLE                            # where an error sends it: IDLE, or HALT if woken from it
        self.level = 0

    def cl(self, level):
        """The 5 bytes this card answers at a cascade level: 4 UID bytes (or CT + 3) and BCC."""
        u = self.uid
        part = u[3 * level:3 * level + 4] if level == self.levels else b"\x88" + u[3 * level:3 * level + 3]
        return part + bytes((part[0] ^ part[1] ^ part[2] ^ part[3],))

    def receive(self, data, nbits):
        """A frame from the reader: (answer as an int, LSB first, its bit count) or None."""
        if nbits == 7:
            cmd = data[0] & 0x7F
            if (cmd == 0x26 and self.state == IDLE) or (cmd == 0x52 and self.state in (IDLE, HALT)):
                self.home = self.state
                self.state = READY
                self.level = 0
                return (0x04 | (self.levels << 6), 16)      # ATQA: UID size in bits 7-6
            if self.state in (READY, ACTIVE):
                self.state = self.home
            return None
        if self.state == READY and nbits >= 16 and data[0] == 0x93 + 2 * self.level:
            nvb = data[1]
            cl = self.cl(self.level)
            if nvb == 0x70 and nbits == 72:
                if bytes(data[2:7]) != cl or crc_a(data[:7]) != data[7] | (data[8] << 8):
                    return None
                if self.level < self.levels:
                    self.level += 1
                    sak = 0x04
                else:
                    self.state = ACTIVE
                    sak = (0x08, 0x00, 0x20)[self.levels]
                return (int.from_bytes(_with_crc(bytes((sak,))), "little"), 24)
            known = ((nvb >> 4) - 2) * 8 + (nvb & 7)
            if 0x20 <= nvb < 0x70 and known < 40 and nbits == 16 + known:
                mine = int.from_bytes(cl, "little")
                sent = int.from_bytes(bytes(data[2:]), "little") if known else 0
                mask = (1 << known) - 1
                if (mine ^ sent) & mask:
                    return None                             # not this card's bits: it stays quiet
                return (mine >> known, 40 - known)
        if self.state == ACTIVE and nbits == 32 and data[0] == 0x50 and data[1] == 0 \
                and crc_a(data[:2]) == data[2] | (data[3] << 8):
            self.state = HALT
            return None
        if self.state in (READY, ACTIVE):
            self.state = self.home                          # anything else: back to IDLE (or HALT)
        return None


class Chip:
    def __init__(self):
        self.regs = bytearray(64)
        self.fifo = bytearray(64)
        self.level = 0
        self.cards = []
        self.dead = None            # None, or the byte MISO reads (a chip that does not answer)
        self.powered = True         # RST high
        self.selected = False
        self._addr = -1             # the frame's current address byte, -1 before the first
        self.transceives = 0        # frames sent to the field (tests)
        self.reset()

    def reset(self):
        r = self.regs
        for i in range(64):
            r[i] = 0
        for a, v in _RESET_VALUES:
            r[a] = v
        self.level = 0

    def set_cards(self, uids):
        """The cards in the field now (bytes each); a card that stays keeps its state, a new one
        starts IDLE (it is powered by the field as it enters it)."""
        old = {c.uid: c for c in self.cards}
        self.cards = [old.get(bytes(u)) or Card(u) for u in uids]

    # --- the pins ---
    def cs(self, level):
        self.selected = not level
        self._addr = -1

    def rst(self, level):
        if level and not self.powered:
            self.reset()
        self.powered = bool(level)

    # --- SPI: one byte in, one byte out ---
    def xfer(self, b):
        if self.dead is not None:
            return self.dead
        if not self.powered:
            return 0
        a = self._addr
        if a < 0:
            self._addr = b
            return 0
        if a & 0x80:                # a read frame: answer the previous address, b is the next
            self._addr = b
            return self._read((a >> 1) & 0x3F)
        self._write((a >> 1) & 0x3F, b)
        return 0

    def _read(self, reg):
        r = self.regs
        if reg == _FIFO_DATA:
            if not self.level:
                return 0
            v = self.fifo[0]
            self.fifo[0:self.level - 1] = self.fifo[1:self.level]
            self.level -= 1
            return v
        if reg == _FIFO_LEVEL:
            return self.level
        if reg == _VERSION:
            return VERSION
        if reg == _COM_IRQ or reg == _DIV_IRQ:
            return r[reg] & 0x7F
        return r[reg]

    def _write(self, reg, v):
        r = self.regs
        if reg == _COMMAND:
            cmd = v & 0x0F
            if cmd == _SOFT_RESET:
                self.reset()
                return
            r[reg] = v & 0x3F
            if cmd == _CALC_CRC:
                c = crc_a(self.fifo[:self.level], _CRC_PRESETS[r[_MODE] & 3])
                self.level = 0
                r[_CRC_H] = c >> 8
                r[_CRC_L] = c & 0xFF
                r[_DIV_IRQ] |= 0x04
        elif reg == _COM_IRQ or reg == _DIV_IRQ:
            if v & 0x80:
                r[reg] |= v & 0x7F
            else:
                r[reg] &= ~v & 0x7F
        elif reg == _FIFO_LEVEL:
            if v & 0x80:
                self.level = 0
                r[_ERROR] &= ~0x10
        elif reg == _FIFO_DATA:
            if self.level < 64:
                self.fifo[self.level] = v
                self.level += 1
            else:
                r[_ERROR] |= 0x10               # BufferOvfl
        elif reg == _BIT_FRAMING:
            r[reg] = v & 0x7F
            if v & 0x80 and r[_COMMAND] & 0x0F == _TRANSCEIVE:
                self._transceive()
        elif reg == _COLL:
            r[reg] = (r[reg] & 0x7F) | (v & 0x80)
        elif reg != _ERROR and reg != _VERSION and reg != _STATUS1:
            r[reg] = v

    def _transceive(self):
        # no allocation unless a card is in the field: the emulated board's heap churns no more
        # for a reader polling an empty field than an ESP32's does
        r = self.regs
        self.transceives += 1
        framing = r[_BIT_FRAMING]
        tx_last = framing & 7
        rx_align = (framing >> 4) & 7
        n = self.level
        self.level = 0
        r[_ERROR] = 0
        r[_COM_IRQ] |= 0x40                     # TxIRq
        answers = None
        if self.cards and r[_TX_CONTROL] & 0x03 and r[_TX_ASK] & 0x40:
            data = bytes(self.fifo[:n])
            nbits = (n - 1) * 8 + (tx_last or 8) if n else 0
            for card in self.cards:
                a = card.receive(data, nbits)
                if a is not None:
                    if answers is None:
                        answers = []
                    answers.append(a)
        if answers is None:
            if r[_T_MODE] & 0x80 and (r[_T_RELOAD_H] or r[_T_RELOAD_L]):
                r[_COM_IRQ] |= 0x01             # TimerIRq: nobody answered in time
            return
        bits = answers[0][1]
        ored = 0
        anded = (1 << bits) - 1
        for v, _ in answers:
            ored |= v
            anded &= v
        diff = ored ^ anded
        value = ored
        coll = r[_COLL] & 0x80
        if diff:
            k = 0
            while not diff >> k & 1:
                k += 1
            if not coll:                        # ValuesAfterColl 0: the bits from the collision on read 0
                value &= (1 << k) - 1
            pos = rx_align + k + 1
            coll |= (pos & 0x1F) if pos <= 32 else 0x20
            r[_ERROR] |= 0x08                   # CollErr
            r[_COM_IRQ] |= 0x02                 # ErrIRq
        else:
            coll |= 0x20                        # CollPosNotValid: no collision
        r[_COLL] = coll
        total = rx_align + bits
        raw = (value << rx_align).to_bytes((total + 7) // 8, "little")
        self.fifo[0:len(raw)] = raw
        self.level = len(raw)
        r[_CONTROL] = (r[_CONTROL] & 0xF8) | (total & 7)
        r[_COM_IRQ] |= 0x20                     # RxIRq
