"""The application's typed keys: what every route module reads from `request.app`, and what the
login check leaves on a request for its handler."""
from __future__ import annotations

from aiohttp import web

from ..config import User
from ..hub import WardHub
from ..ota.service import OtaService
from .sessions import ConsoleSession, Sessions

HUB = web.AppKey("hub", WardHub)
SESSIONS = web.AppKey("sessions", Sessions)
OTA = web.AppKey("ota", OtaService)

SESSION = web.RequestKey("session", ConsoleSession)     # the console session of the request
USER = web.RequestKey("user", User)                    # its user, as the ward config has them now
