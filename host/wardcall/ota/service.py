"""OtaService: the server's update jobs — check a package's signature with the ward's public key,
start it over chosen terminals, run their updates a few at a time, show progress on the consoles
("ota" events) and keep outcomes in the record.

The server holds only the public key ([ota] public_key in the ward TOML): a package not signed by
the ward's private key (`wardcall update`, the technician's side) is refused before any transfer,
and so is one whose serial is not newer than what a chosen terminal is known to run.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path
from typing import Any

from . import signing
from .errors import OtaConflict, OtaError
from .jobs import DEFAULT_TRIAL_S, DeviceUpdate, Job
from .package import Package
from .transfer import TerminalUpdate

log = logging.getLogger("wardcall.ota")


class OtaService:
    def __init__(self, hub: Any, public_key: Path | None = None) -> None:
        self.hub = hub
        self.public_key = public_key if public_key is not None else hub.config.ota.public_key
        self.jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task] = set()
        self._runs: dict[int, asyncio.Task] = {}      # job id -> the task running it
        self._outcomes: dict[int, list[asyncio.Task]] = {}   # job id -> its records being written
        self.busy: set[str] = set()           # devices with an update in progress
        # installed serial per device, from the terminals' own status answers (this server run)
        self.serials: dict[str, int] = {}

    def note_serial(self, device: str, serial: int) -> None:
        self.serials[device] = serial

    def start(self, package: Package, devices: list[str] | None, user: str, trial_s: int = DEFAULT_TRIAL_S,
              parallel: int = 4, keep_going: bool = False, force: bool = False,
              allow_downgrade: bool = False) -> Job:
        """A job over the chosen terminals, or OtaError (status 400: unsigned, forged or tampered
        package, bad request; 409: downgrade, terminal busy or offline) before anything is sent.
        allow_downgrade skips the check against the serials remembered here (recorded as an
        override); the terminal's own check is never skipped."""
        signing.verify(package, signing.load_public_key(self.public_key))
        hub = self.hub
        ward = hub.ward
        if devices is None:
            chosen = sorted(d for d in ward.terminals if d in hub.links)
            if not chosen:
                raise OtaConflict("no terminal is online")
        else:
            unknown = [d for d in devices if d not in ward.terminals]
            if unknown:
                raise OtaError(f"unknown terminal(s): {', '.join(unknown)}")
            chosen = list(dict.fromkeys(devices))
        busy = [d for d in chosen if d in self.busy]
        if busy:
            raise OtaConflict(f"an update is already running on {', '.join(busy)}")
        older = [d for d in chosen if self.serials.get(d, 0) >= package.serial]
        if older and not allow_downgrade:
            raise OtaConflict(f"downgrade refused: package serial {package.serial} is not newer than the serial "
                              + ", ".join(f"{self.serials[d]} installed on {d}" for d in older)
                              + " (sign the firmware again for a new serial)")
        job = Job(next(self._ids), package, user, trial_s, keep_going)
        if older:
            job.override = f"downgrade check overridden by {user} for {', '.join(older)}"
            log.warning("update %s: %s", job.id, job.override)
            self._spawn(self._record_override(job, older))
        for d in chosen:
            job.devices[d] = DeviceUpdate(d, total=package.size, from_version=ward.terminals[d].firmware)
        self.jobs[job.id] = job
        self.busy.update(chosen)
        self._runs[job.id] = self._spawn(self._run_job(job, max(1, parallel), force), name=f"ota job {job.id}")
        return job

    async def wait(self, job: Job) -> None:
        """Until the job is done and every outcome of it is in the record."""
        await asyncio.shield(self._runs[job.id])

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
            # each terminal's outcome is in the record before the job's
            await asyncio.gather(*self._outcomes.pop(job.id, ()), return_exceptions=True)
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
        self._outcomes.setdefault(job.id, []).append(self._spawn(self._record(job, du)))

    async def _record_override(self, job: Job, devices: list[str]) -> None:
        try:
            await self.hub.record("ota_downgrade_override", user=job.user, job=job.id, version=job.package.version,
                                  serial=job.package.serial, devices=",".join(devices),
                                  known=",".join(f"{d}:{self.serials.get(d, 0)}" for d in devices))
        except Exception:
            log.exception("recording a downgrade override failed")

    async def _record(self, job: Job, du: DeviceUpdate | None) -> None:
        try:
            if du is None:
                await self.hub.record("ota_job_done", user=job.user, job=job.id, version=job.package.version,
                                      results=",".join(f"{d.device}:{d.state}" for d in job.devices.values()))
            else:
                await self.hub.record("ota_update", du.device, user=job.user, job=job.id,
                                      version=job.package.version, serial=job.package.serial,
                                      previous=du.from_version,
                                      result=du.state, detail=du.detail[:200])
        except Exception:
            log.exception("recording an update result failed")

    # ----- tasks -----

    def _spawn(self, coro: Any, name: str | None = None) -> asyncio.Task:
        # kept until done, so that stop() can cancel them and they are not garbage-collected
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)
