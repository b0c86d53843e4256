"""OtaService: the server's update jobs — start one over chosen terminals, run their updates a
few at a time, show progress on the consoles ("ota" events) and keep outcomes in the record.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

from .errors import OtaError
from .jobs import DEFAULT_TRIAL_S, DeviceUpdate, Job
from .package import Package
from .transfer import TerminalUpdate

log = logging.getLogger("wardcall.ota")


class OtaService:
    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task] = set()
        self.busy: set[str] = set()           # devices with an update in progress

    def start(self, package: Package, devices: list[str] | None, user: str, trial_s: int = DEFAULT_TRIAL_S,
              parallel: int = 4, keep_going: bool = False, force: bool = False) -> Job:
        hub = self.hub
        ward = hub.ward
        if devices is None:
            chosen = sorted(d for d in ward.terminals if d in hub.links)
            if not chosen:
                raise OtaError("no terminal is online")
        else:
            unknown = [d for d in devices if d not in ward.terminals]
            if unknown:
                raise OtaError(f"unknown terminal(s): {', '.join(unknown)}")
            chosen = list(dict.fromkeys(devices))
        busy = [d for d in chosen if d in self.busy]
        if busy:
            raise OtaError(f"an update is already running on {', '.join(busy)}")
        job = Job(next(self._ids), package, user, trial_s, keep_going)
        for d in chosen:
            job.devices[d] = DeviceUpdate(d, total=package.size, from_version=ward.terminals[d].firmware)
        self.jobs[job.id] = job
        self.busy.update(chosen)
        self._spawn(self._run_job(job, max(1, parallel), force), name=f"ota job {job.id}")
        return job

    async def _run_job(self, job: Job, parallel: int, force: bool) -> None:
        sem = asyncio.Semaphore(parallel)

        async def one(du: DeviceUpdate) -> None:
            async with sem:
                if job.stopped:
                    self.finish(job, du, "skipped", job.stopped)
                    return
                try:
                    await TerminalUpdate(self, job, du).run(force)
                except Exception as exc:  # a bug must not leave the job hanging
                    log.exception("update of %s failed", du.device)
                    self.finish(job, du, "failed", f"internal error: {exc}")
                finally:
                    self.busy.discard(du.device)
                if du.state in ("failed", "rolled_back") and not job.keep_going and not job.stopped:
                    job.stopped = f"stopped after {du.device} {du.state.replace('_', ' ')}"

        try:
            await asyncio.gather(*(one(du) for du in job.devices.values()))
        finally:
            for du in job.devices.values():
                self.busy.discard(du.device)
                if not du.finished:
                    self.finish(job, du, "failed", "server stopping")
            await self._record(job, None)

    # ----- progress and outcomes -----

    def publish(self, job: Job, du: DeviceUpdate) -> None:
        """An "ota" event on every console stream."""
        self.hub.bus.publish("ota", {"job": job.id, "version": job.package.version, "update": du.view()})

    def set_state(self, job: Job, du: DeviceUpdate, state: str, detail: str = "") -> None:
        du.state, du.detail = state, detail
        log.info("update %s of %s: %s %s", job.package.version, du.device, state, detail)
        self.publish(job, du)

    def finish(self, job: Job, du: DeviceUpdate, state: str, detail: str) -> None:
        self.set_state(job, du, state, detail)
        self._spawn(self._record(job, du))

    async def _record(self, job: Job, du: DeviceUpdate | None) -> None:
        try:
            if du is None:
                await self.hub.record("ota_job_done", user=job.user, job=job.id, version=job.package.version,
                                      results=",".join(f"{d.device}:{d.state}" for d in job.devices.values()))
            else:
                await self.hub.record("ota_update", du.device, user=job.user, job=job.id,
                                      version=job.package.version, previous=du.from_version,
                                      result=du.state, detail=du.detail[:200])
        except Exception:
            log.exception("recording an update result failed")

    # ----- tasks -----

    def _spawn(self, coro: Any, name: str | None = None) -> None:
        # kept until done, so that stop() can cancel them and they are not garbage-collected
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)
