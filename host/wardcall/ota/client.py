"""UpdateClient: the server's update API over HTTP (wardcall.host_api), as `wardcall update` uses it."""
from __future__ import annotations

from typing import Any

from ..host_api import HostApi
from .errors import OtaError
from .package import Package


class UpdateClient(HostApi):
    """Logged in as a console user (a technician or an administrator)."""

    error = OtaError

    def login(self) -> dict[str, Any]:
        if not self.user or self.password is None:
            raise OtaError("the update runs through the host's API: pass --host-user USER (or set "
                           "$WARDCALL_HOST_USER) and set $WARDCALL_HOST_PASSWORD")
        return super().login()

    def start(self, package: Package, devices: list[str] | None, trial_s: int, parallel: int,
              keep_going: bool, force: bool, allow_downgrade: bool = False) -> dict[str, Any]:
        body = {"package": package.to_json(), "devices": devices, "trial_s": trial_s, "parallel": parallel,
                "keep_going": keep_going, "force": force}
        if allow_downgrade:
            body["allow_downgrade"] = True
        return self.post_update(body)

    def post_update(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /api/ota/updates with this body (start() builds it from a Package); an update
        asks for the password again."""
        return self.post("/api/ota/updates", {**body, "password": self.password}, timeout=120)

    def jobs(self) -> list[dict[str, Any]]:
        return self.get("/api/ota/updates")

    def job(self, job_id: int) -> dict[str, Any]:
        return self.get(f"/api/ota/updates/{job_id}")
