"""An update job and the progress of each terminal in it, as the API and the consoles show them."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .package import Package

DEFAULT_TRIAL_S = 60            # the new firmware must reach the host within this, or it rolls back
FINISHED = ("ok", "rolled_back", "failed", "skipped")


@dataclass
class DeviceUpdate:
    device: str
    state: str = "queued"      # queued|sending|committing|rebooting|trial|ok|rolled_back|failed|skipped
    sent: int = 0
    total: int = 0
    detail: str = ""
    from_version: str = ""
    version: str = ""          # what it runs at the end
    resumes: int = 0

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def view(self) -> dict[str, Any]:
        return {"device": self.device, "state": self.state, "sent": self.sent, "total": self.total,
                "detail": self.detail, "from": self.from_version, "version": self.version,
                "resumes": self.resumes}


@dataclass
class Job:
    id: int
    package: Package
    user: str
    trial_s: int
    keep_going: bool
    devices: dict[str, DeviceUpdate] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    stopped: str = ""
    override: str = ""          # an explicit, recorded override of the host's downgrade check

    @property
    def done(self) -> bool:
        return all(d.finished for d in self.devices.values())

    def view(self) -> dict[str, Any]:
        return {"job": self.id, "version": self.package.version, "serial": self.package.serial,
                "key": self.package.kid, "override": self.override, "size": self.package.size,
                "files": len(self.package.files), "user": self.user, "trial_s": self.trial_s,
                "started": self.started, "done": self.done, "stopped": self.stopped,
                "devices": [d.view() for d in self.devices.values()]}
