# Wi-Fi station: connect with each attempt bounded in time, retries backed off (1 s doubling to
# 30 s, with jitter), and the interface cycled after every few failures. Never gives up: a nurse
# call terminal keeps trying, showing the offline pattern meanwhile.
from micropython import const
import time
import asyncio
import network

from backoff import Backoff
from log import log

_ATTEMPT_MS = const(15000)
_CYCLE_AFTER = const(5)


class Wifi:
    def __init__(self, ssid, password):
        self.ssid = ssid
        self.password = password
        self.wlan = network.WLAN(network.STA_IF)
        self._backoff = Backoff(1000, 30000)

    def connected(self):
        return self.wlan.isconnected()

    def ifconfig(self):
        return self.wlan.ifconfig()

    def configure(self, ssid, password):
        if ssid != self.ssid or password != self.password:
            self.ssid = ssid
            self.password = password
            try:
                self.wlan.disconnect()
            except OSError as e:
                log("wifi", "disconnect failed: %r" % (e,))

    async def connect(self, alive):
        attempt = 0
        while not self.wlan.isconnected():
            attempt += 1
            if attempt > 1 and attempt % _CYCLE_AFTER == 1:
                log("wifi", "%d attempts failed: restarting the interface" % (attempt - 1))
                self.wlan.active(False)
                await asyncio.sleep_ms(100)
            try:
                self.wlan.active(True)
                log("wifi", "connecting to %s (attempt %d)" % (self.ssid, attempt))
                self.wlan.connect(self.ssid, self.password)
            except OSError as e:
                log("wifi", "connect failed: %r" % (e,))
            deadline = time.ticks_add(time.ticks_ms(), _ATTEMPT_MS)
            while not self.wlan.isconnected() and time.ticks_diff(deadline, time.ticks_ms()) > 0:
                await asyncio.sleep_ms(100)
                alive()
            if self.wlan.isconnected():
                break
            wait = self._backoff.next()
            log("wifi", "not connected; retrying in %d ms" % wait)
            # the station may still associate by itself meanwhile: keep looking
            deadline = time.ticks_add(time.ticks_ms(), wait)
            while not self.wlan.isconnected() and time.ticks_diff(deadline, time.ticks_ms()) > 0:
                await asyncio.sleep_ms(100)
                alive()
        self._backoff.reset()
        log("wifi", "connected, address %s" % self.wlan.ifconfig()[0])
