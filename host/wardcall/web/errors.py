"""Errors as the console sees them: `{"error": "…"}` with an HTTP status. The domain raises
WardError with a kind (not found, conflict, invalid); this is where kinds become statuses."""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Awaitable, Callable

from aiohttp import web

from ..storage import StorageError
from ..ward import WardError

log = logging.getLogger("wardcall.web")

BODY_TIMEOUT_S = 30.0       # a body that takes longer to arrive is refused (a slow or stalled client)
STATUS_OF_KIND = {WardError.NOT_FOUND: 404, WardError.CONFLICT: 409, WardError.INVALID: 400}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def http_error(cls: type[web.HTTPException], message: str) -> web.HTTPException:
    """An aiohttp HTTP exception with the JSON error body (for raising deep inside a handler)."""
    return cls(text=json.dumps({"error": message}), content_type="application/json")


async def json_body(request: web.Request) -> dict:
    """The request's JSON object ({} without a body); WardError(INVALID) for anything else."""
    if not request.can_read_body:
        return {}
    try:
        body = await asyncio.wait_for(request.json(), BODY_TIMEOUT_S)
    except (ValueError, UnicodeDecodeError):
        # ValueError covers JSONDecodeError and CPython's limit on integer digits
        raise WardError(WardError.INVALID, "the request body is not JSON (or holds a number too long)")
    except (asyncio.TimeoutError, ConnectionError):
        raise WardError(WardError.INVALID, f"the request body did not arrive within {BODY_TIMEOUT_S:g} s")
    if not isinstance(body, dict):
        raise WardError(WardError.INVALID, "the request body must be a JSON object")
    return body


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except WardError as exc:
        return json_error(STATUS_OF_KIND.get(exc.kind, 400), exc.message)
    except StorageError as exc:
        # not stored, so not done (logged and alarmed by the hub): the user may try again
        return json_error(503, str(exc))
