# Uptime that survives the ticks_ms wrap, and unix time once the host has told it (WELCOME).
import time


class Clock:
    def __init__(self):
        self._last = time.ticks_ms()
        self._ms = 0            # uptime in ms, accumulated across ticks wraps
        self._unix_at = None    # (unix s, uptime ms) at the last WELCOME

    def uptime_ms(self):
        now = time.ticks_ms()
        d = time.ticks_diff(now, self._last)
        if d > 0:
            self._ms += d
        self._last = now
        return self._ms

    def sync(self, unix_s):
        self._unix_at = (unix_s, self.uptime_ms())

    def synced(self):
        return self._unix_at is not None

    def unix(self):
        if self._unix_at is None:
            return 0
        return self._unix_at[0] + (self.uptime_ms() - self._unix_at[1]) // 1000
