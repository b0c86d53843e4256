# Emulated ESP32 board: a pure-Python TaskQueue/Task for MicroPython's asyncio, installed as
# sys.modules["asyncio.task"] by _emu.use_python_asyncio() so that asyncio orders its tasks with
# time.ticks_diff from the time shim (ESP32 tick period 2**30) instead of the C module's native
# unix tick period. Same interface as asyncio's own task.py (TaskQueue: peek/push/pop/remove;
# Task: coro/data/state/ph_key, __iter__/__next__/done/cancel); implemented as a sorted list.
import sys
from time import ticks_ms, ticks_diff

_core = None


def core():
    global _core
    if _core is None:
        _core = sys.modules["asyncio.core"]
    return _core


class TaskQueue:
    def __init__(self):
        self.q = []

    def peek(self):
        q = self.q
        return q[0] if q else None

    def push(self, v, key=None):
        v.data = None
        k = key if key is not None else ticks_ms()
        v.ph_key = k
        q = self.q
        lo = 0
        hi = len(q)
        while lo < hi:  # first index whose key is later than k (FIFO among equal keys)
            mid = (lo + hi) >> 1
            if ticks_diff(q[mid].ph_key, k) > 0:
                hi = mid
            else:
                lo = mid + 1
        q.insert(lo, v)

    def pop(self):
        return self.q.pop(0)

    def remove(self, v):
        q = self.q
        for i in range(len(q)):
            if q[i] is v:
                q.pop(i)
                return


class Task:
    def __init__(self, coro, globals=None):
        self.coro = coro
        self.data = None
        self.state = True  # True: running; None/False: done; callable or TaskQueue: waiters
        self.ph_key = 0

    def __iter__(self):
        if not self.state:
            self.state = False  # finished: mark as awaited
        elif self.state is True:
            self.state = TaskQueue()
        elif type(self.state) is not TaskQueue:
            raise RuntimeError("can't wait")
        return self

    def __next__(self):
        if not self.state:
            raise self.data
        c = core()
        self.state.push(c.cur_task)
        c.cur_task.data = self

    def done(self):
        return not self.state

    def cancel(self):
        if not self.state:
            return False
        c = core()
        if self is c.cur_task:
            raise RuntimeError("can't cancel self")
        while isinstance(self.data, Task):
            self = self.data
        if hasattr(self.data, "remove"):
            self.data.remove(self)
            c._task_queue.push(self)
        elif ticks_diff(self.ph_key, ticks_ms()) > 0:
            c._task_queue.remove(self)
            c._task_queue.push(self)
        self.data = c.CancelledError
        return True
