"""Over-the-air updates for technicians and administrators (docs/DEPLOY.md, "Over-the-air updates").

    POST /api/ota/updates   {"package": {...}, "devices": [...] | null (every online terminal),
                             "trial_s": 60, "parallel": 4, "keep_going": false, "force": false,
                             "allow_downgrade": false, "password": "…"}   (the password again: an update is dangerous)
                            -> 202 {job view}
    GET  /api/ota/updates   [job views]
    GET  /api/ota/updates/{id}   {"job", "version", "done", "stopped", "devices": [
                             {"device", "state", "sent", "total", "detail", "from", "version"}]}
"""
from __future__ import annotations

import json

from aiohttp import web

from ..ota.errors import OtaError
from ..ota.jobs import DEFAULT_TRIAL_S
from ..ota.package import Package
from .auth import confirm_password, require
from .errors import json_error
from .keys import HUB, OTA

MAX_UPLOAD = 4 * 1024 * 1024    # bytes of a package upload (JSON, base64)


async def create(request: web.Request) -> web.Response:
    user = require(request, "update")
    svc = request.app[OTA]
    raw = bytearray()
    async for piece in request.content.iter_chunked(65536):
        raw += piece
        if len(raw) > MAX_UPLOAD:
            return json_error(413, f"a package upload is limited to {MAX_UPLOAD} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return json_error(400, "the request body is not JSON")
    if not isinstance(body, dict):
        return json_error(400, "the request body must be a JSON object")
    await confirm_password(request, body)
    devices = body.get("devices")
    trial_s = body.get("trial_s", DEFAULT_TRIAL_S)
    parallel = body.get("parallel", 4)
    if devices is not None and (not isinstance(devices, list) or not all(isinstance(d, str) for d in devices) or not devices):
        return json_error(400, "devices must be a non-empty list of device ids, or null for every online terminal")
    if isinstance(trial_s, bool) or not isinstance(trial_s, int) or not 5 <= trial_s <= 600:
        return json_error(400, "trial_s must be a whole number of seconds from 5 to 600")
    if isinstance(parallel, bool) or not isinstance(parallel, int) or not 1 <= parallel <= 32:
        return json_error(400, "parallel must be 1-32")
    try:
        package = Package.from_json(body.get("package"))
        job = svc.start(package, devices, user.login, trial_s=trial_s, parallel=parallel,
                        keep_going=bool(body.get("keep_going")), force=bool(body.get("force")),
                        allow_downgrade=bool(body.get("allow_downgrade")))
    except OtaError as exc:
        return json_error(exc.status, str(exc))
    await request.app[HUB].record("ota_job_started", user=user.login, job=job.id, version=package.version,
                                  devices=",".join(job.devices), size=package.size)
    return web.json_response(job.view(), status=202)


async def list_jobs(request: web.Request) -> web.Response:
    return web.json_response([j.view() for j in request.app[OTA].jobs.values()])


async def get_job(request: web.Request) -> web.Response:
    try:
        job = request.app[OTA].jobs[int(request.match_info["job"])]
    except (KeyError, ValueError):
        return json_error(404, "no such update job")
    return web.json_response(job.view())


def add_ota_routes(app: web.Application) -> None:
    app.router.add_post("/api/ota/updates", create)
    app.router.add_get("/api/ota/updates", list_jobs)
    app.router.add_get("/api/ota/updates/{job}", get_job)
