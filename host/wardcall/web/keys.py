"""The application's typed keys: what every route module reads from `request.app`."""
from __future__ import annotations

from aiohttp import web

from ..hub import WardHub
from ..ota.service import OtaService
from .sessions import Sessions

HUB = web.AppKey("hub", WardHub)
SESSIONS = web.AppKey("sessions", Sessions)
OTA = web.AppKey("ota", OtaService)
