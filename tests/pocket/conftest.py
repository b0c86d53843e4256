"""Fixtures for the pocket console tests: one headless Chromium (Debian's, driven by Playwright)
and, for each nurse, a browser context of her own with a phone's viewport, touch and user agent
(Playwright's "Pixel 7" device), so two or three nurses are logged in at once, each on her phone."""
from __future__ import annotations

import functools
from typing import Any, Callable

import pytest

from tests.fixtures.host import NURSE
from wardcall.client import WardApi
from wardcall.passwords import hash_password
from tests.console.conftest import CHROMIUM, TIMEOUT_MS, aloop, sim_terminal, trusting_ward_ca  # noqa: F401 (fixtures)

PHONE = "Pixel 7"


@pytest.fixture
def phones():
    """Factory: phones(label="anna") -> a new page in a new phone-sized context of one browser
    (phones("station", desktop=True): the station's PC). Every page's JavaScript errors fail the test."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=trusting_ward_ca())
        device = {k: v for k, v in p.devices[PHONE].items() if k != "default_browser_type"}
        pages: list[Any] = []

        def phone(label: str = "phone", desktop: bool = False, **context_kw: Any) -> Any:
            # desktop: the station console's PC instead of a phone
            base = {"viewport": {"width": 1600, "height": 900}} if desktop else device
            context = browser.new_context(**{**base, **context_kw})
            context.set_default_timeout(TIMEOUT_MS)
            page = context.new_page()
            page.label = label
            page.js_errors = []
            page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
            pages.append(page)
            return page

        try:
            yield phone
        finally:
            errors = {page.label: page.js_errors for page in pages if page.js_errors}
            for page in pages:
                page.context.close()
            browser.close()
        assert not errors, f"JavaScript errors on the phones: {errors}"


def pocket_login(page: Any, url: str, user: str, password: str) -> None:
    """Open the pocket console on this phone and log in; returns when its event stream is live."""
    from playwright.sync_api import expect
    page.goto(url + "/pocket/")
    page.fill("#login-user", user)
    page.fill("#login-password", password)
    page.click("#login button[type=submit]")
    expect(page.locator("#login-screen")).to_be_hidden()
    expect(page.locator("body")).to_have_attribute("data-connection", "live")


def my_card(page: Any, device: str) -> Any:
    return page.locator(f'#mine li.call[data-device="{device}"]')


def other_card(page: Any, device: str) -> Any:
    return page.locator(f'#others li.call[data-device="{device}"]')


PhoneFactory = Callable[..., Any]


# ---------------------------------------------------------------- a staffed ward

# the shift's care staff of the test wards: login -> (name, role, badge UID); password NURSE[1]
STAFF = {"anna": ("Anna Berg", "nurse", "0a11b2c3"), "ben": ("Ben Okafor", "nurse", "0b22c3d4"),
         "carla": ("Carla Diaz", "charge_nurse", "0c33d4e5")}
PASSWORD = NURSE[1]


@functools.cache
def _password_hash() -> str:
    return hash_password(PASSWORD)       # scrypt is slow on purpose: once per test process


def staff_toml(wait_s: dict[str, float] | None = None, phone_silent_s: float = 45.0) -> str:
    """The ward TOML for STAFF, each with her badge, and routing with short waits: a step of a
    bathroom call waits 3 s for an Accept, a patient call 30 s (long enough that only a decline
    moves it while a test looks), unless `wait_s` says otherwise."""
    waits = {"code_blue": 0, "staff_assist": 0, "bathroom": 3, "patient": 30, "technical": 3, **(wait_s or {})}
    lines = [""]
    for login, (name, role, badge) in STAFF.items():
        lines += [f"[users.{login}]", f'name = "{name}"', f'password = "{_password_hash()}"', f'role = "{role}"',
                  f'badge = "{badge}"', ""]
    lines += ["[routing]", f"phone_silent_s = {phone_silent_s}", "", "[routing.wait_s]",
              *(f"{kind} = {seconds}" for kind, seconds in waits.items()), ""]
    return "\n".join(lines)


def assign(loop: Any, url: str, body: dict[str, Any], user: str = "carla") -> dict[str, Any]:
    """POST /api/assignment as the charge nurse (the console's grid does the same)."""
    async def post() -> dict[str, Any]:
        async with WardApi(url) as api:
            await api.login(user, PASSWORD)
            return await api.post("/api/assignment", body)
    return loop.run(post())


def shift(rooms: list[str]) -> dict[str, Any]:
    """This shift: rooms 101, 103, … are Anna's with Ben as buddy; 102, 104, … Ben's with Anna as
    buddy; Carla is the charge nurse."""
    anna, ben = rooms[0::2], rooms[1::2]
    return {"charge": "carla", "set": [{"rooms": anna, "primary": "anna", "secondary": "ben"},
                                       *([{"rooms": ben, "primary": "ben", "secondary": "anna"}] if ben else [])]}
