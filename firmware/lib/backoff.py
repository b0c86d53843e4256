# Exponential backoff with random jitter (so that 200 terminals coming back at once spread out),
# and a sleep that keeps reporting to the supervisor.
import os
import asyncio


def jitter(limit):
    """A random int in 0..limit from the hardware RNG (the unix port's random is not seeded)."""
    if limit <= 0:
        return 0
    b = os.urandom(3)
    return ((b[0] << 16) | (b[1] << 8) | b[2]) % (limit + 1)


class Backoff:
    def __init__(self, first_ms, max_ms):
        self.first = first_ms
        self.max = max_ms
        self.delay = first_ms

    def reset(self):
        self.delay = self.first

    def next(self):
        """The next wait: the current delay plus up to half of it again; then double the delay."""
        d = self.delay + jitter(self.delay // 2)
        self.delay = min(self.delay * 2, self.max)
        return d


async def sleep_alive(ms, alive, step=500, stop=None):
    """Sleep ms, telling the supervisor every step; stop(ms slept so far) true ends it early
    (then True is returned)."""
    slept = 0
    while slept < ms:
        if stop is not None and stop(slept):
            return True
        d = ms - slept if ms - slept < step else step
        await asyncio.sleep_ms(d)
        alive()
        slept += d
    return False
