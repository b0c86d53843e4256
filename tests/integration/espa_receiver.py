"""A paging system's side of ESPA 4.4.4, written from the specification for the tests: it
answers its address's ENQ with ACK, checks each data block's BCC (ACK or NAK), and takes the
records of a block it acknowledged once. It runs in a thread on the master end of a pty pair."""
from __future__ import annotations

import os
import select
import threading
import tty

SOH, STX, ETX, EOT, ENQ, ACK, NAK, US, RS = 1, 2, 3, 4, 5, 6, 0x15, 0x1F, 0x1E


class EspaReceiver:
    def __init__(self, address: str = "1") -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        self.device = os.ttyname(self.slave)
        self.address = ord(address)
        self.answering = True           # False: a paging system that is off (no answer at all)
        self.nak_next = 0               # NAK this many good blocks first (a line disturbance)
        self.pages: list[dict[str, str]] = []    # what was taken, once each
        self.blocks = 0                 # data blocks seen, good or not
        self.bad_bcc = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        os.close(self.master)
        os.close(self.slave)

    def _read(self) -> int | None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    data = os.read(self.master, 1)
                except OSError:
                    return None
                if data:
                    return data[0]
        return None

    def _answer(self, byte: int) -> None:
        if self.answering:
            os.write(self.master, bytes([byte]))

    def _run(self) -> None:
        previous = None
        while True:
            byte = self._read()
            if byte is None:
                return
            if byte == ENQ and previous == self.address:
                self._answer(ACK)                 # selected: ready to receive
            elif byte == SOH:
                self._block()
            previous = byte

    def _block(self) -> None:
        """After SOH: header STX text ETX BCC; BCC is the XOR of everything after SOH to ETX."""
        checked = bytearray()
        while True:
            byte = self._read()
            if byte is None:
                return
            checked.append(byte)
            if byte == ETX:
                break
        bcc = self._read()
        self.blocks += 1
        check = 0
        for b in checked:
            check ^= b
        if bcc != check or checked[0:2] != bytes([ord("1"), STX]):
            self.bad_bcc += 1
            self._answer(NAK)
            return
        if self.nak_next > 0:
            self.nak_next -= 1
            self._answer(NAK)
            return
        if not self.answering:
            return
        records = {}
        for record in bytes(checked[2:-1]).split(bytes([RS])):
            ident, _, value = record.partition(bytes([US]))
            records[ident.decode()] = value.decode("ascii")
        self.pages.append(records)
        self._answer(ACK)
