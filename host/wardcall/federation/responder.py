"""What the ward host answers the hospital, on its leaf node link: a cross-ward team member's
accept of one of the ward's calls (wardcall.<ward>.rpc.accept). The accept goes through the hub
like a pocket console's (recorded with her name and team, routing stops, the terminal's lamp
changes), and is answered once stored; bad input gets a clear error and a rate-limited log line.
"""
from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from ..ratelog import RateLimitedLog
from ..storage import StorageError
from ..ward import WardError
from .subjects import rpc_subject

if TYPE_CHECKING:
    from ..hub import WardHub

log = logging.getLogger("wardcall.federation")
_ratelog = RateLimitedLog(log)
TEXT_MAX = 64


def _reply(ok: bool, **fields: Any) -> bytes:
    return json.dumps({"ok": ok, **fields}).encode()


def parse_accept(data: bytes) -> tuple[int, str]:
    """(call id, who): the team member as the record names her ("login (team)"); ValueError."""
    try:
        request = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not JSON") from None
    if not isinstance(request, dict):
        raise ValueError("not a JSON object")
    call_id, user, team = request.get("call_id"), request.get("user"), request.get("team")
    if isinstance(call_id, bool) or not isinstance(call_id, int) or call_id < 1:
        raise ValueError(f"call_id must be a call's number, not {str(call_id)[:TEXT_MAX]!r}")
    names = []
    for name, value in (("user", user), ("team", team)):
        if not isinstance(value, str) or not value.strip() or len(value) > TEXT_MAX:
            raise ValueError(f"{name} must be a name of 1-{TEXT_MAX} characters")
        names.append(value.strip())
    return call_id, f"{names[0]} ({names[1]})"


async def serve_requests(nc: Any, hub: "WardHub", ward_id: str) -> None:
    async def accept(msg: Any) -> None:
        try:
            call_id, who = parse_accept(msg.data)
        except ValueError as exc:
            _ratelog.warning(("bad accept",), "federation: a bad accept request from the hospital: %s", exc)
            await msg.respond(_reply(False, error=f"bad request: {exc}", status="bad_request"))
            return
        try:
            view = await hub.accept(call_id, who)
        except WardError as exc:
            await msg.respond(_reply(False, error=str(exc), status=exc.kind))
            return
        except StorageError as exc:
            await msg.respond(_reply(False, error=str(exc), status="unavailable"))
            return
        log.info("federation: call %d accepted by %s from the hospital", call_id, who)
        await msg.respond(_reply(True, call=view))

    await nc.subscribe(rpc_subject(ward_id, "accept"), cb=accept)
