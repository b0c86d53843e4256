# A sleep that another task can end early (buzzer, lamps: idle for up to a second, yet a chime or
# a new lamp pattern starts at once). Ending it cancels the sleeping task, which allocates
# nothing until it runs; an Event with wait_for_ms would make a task and a timeout every turn.
import asyncio


class Nap:
    def __init__(self):
        self._task = None       # the task while it sleeps here
        self._woken = False

    def wake(self):
        t = self._task
        if t is not None:
            self._task = None
            self._woken = True
            t.cancel()

    async def sleep_ms(self, ms):
        """Sleep ms, or until wake(); a cancel from anyone else (the supervisor) goes on up."""
        self._task = asyncio.current_task()
        try:
            await asyncio.sleep_ms(ms)
        except asyncio.CancelledError:
            if not self._woken:
                raise
        finally:
            self._task = None
            self._woken = False
