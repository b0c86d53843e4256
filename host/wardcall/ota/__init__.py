"""wardcall.ota: over-the-air firmware updates of online terminals through their sessions
(docs/DEPLOY.md, "Over-the-air updates"; the commands are in docs/PROTOCOL.md, section 12).
Its HTTP routes are in the web layer (wardcall.web.ota_routes).

- package:  build_package() from a firmware folder, Package (checked when uploaded), valid_path()
- signing:  the ward's update key pair: keygen, sign (technician's side), verify (server)
- jobs:     Job and DeviceUpdate: an update over several terminals and each one's progress
- transfer: TerminalUpdate: one terminal — chunked, resumable transfer, commit, trial verdict
- service:  OtaService: runs the jobs in the server, "ota" console events, "ota_update" records
- client:   UpdateClient: that API over HTTP
- cli:      `wardcall update` (register()), run_update()
"""
from .cli import register, run_update
from .client import UpdateClient
from .errors import OtaConflict, OtaError
from .jobs import DEFAULT_TRIAL_S, DeviceUpdate, Job
from .package import PROTECTED, Package, build_package, valid_path
from .service import OtaService
from .transfer import CHUNK, WINDOW, TerminalUpdate

__all__ = ["CHUNK", "DEFAULT_TRIAL_S", "PROTECTED", "WINDOW", "DeviceUpdate", "Job", "OtaConflict", "OtaError", "OtaService",
           "Package", "TerminalUpdate", "UpdateClient", "build_package", "register",
           "run_update", "valid_path"]
