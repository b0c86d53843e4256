"""The web layer: the console API (JSON, Server-Sent Events), the update API and the static
console, in one aiohttp application (`make_app`). Nothing here holds ward rules: every request
becomes a call on the hub (hub.py), and WardError kinds become HTTP statuses here (errors.py).

- app.py             make_app: the application, its middlewares and routes
- keys.py            the typed app keys (hub, sessions, update service)
- errors.py          json_error, WardError kind -> HTTP status, the error middleware
- sessions.py        Sessions: console logins, in memory with a hashed copy kept across restarts
- auth.py            the login check (current_user), login, logout, me
- ward_routes.py     health, state, events (SSE), acknowledge, silence, terminal commands
- console_routes.py  the console page and its static files, layout, reports
- ota_routes.py      over-the-air updates: start one, follow its progress
"""
from .app import make_app

__all__ = ["make_app"]
