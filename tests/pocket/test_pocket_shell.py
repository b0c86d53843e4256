"""The pocket console as a phone gets it from the real host: an installable web app (manifest,
icons, a service worker scoped to /pocket/) with the console's security headers, whose service
worker keeps the app shell and nothing of the API, so the page still opens — and says it is not
connected — where the ward's Wi-Fi does not reach."""
from __future__ import annotations

import json
import struct
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect

from tests.fixtures.host import NURSE
from tests.pocket.conftest import pocket_login, sim_terminal
from wardcall.protocol import wardproto

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_manifest_icons_and_service_worker_come_with_their_types_and_the_consoles_headers(ward_server_factory, make_ward):
    server = ward_server_factory(make_ward(terminals=1))
    url = server.api_url
    status, headers, body = fetch(url + "/pocket")
    assert status == 200 and b'<link rel="manifest" href="/pocket/manifest.webmanifest">' in body   # redirected to /pocket/
    status, headers, body = fetch(url + "/pocket/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert headers["X-Frame-Options"] == "DENY" and "script-src 'self'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"] and headers["X-Content-Type-Options"] == "nosniff"

    status, headers, body = fetch(url + "/pocket/manifest.webmanifest")
    assert status == 200 and headers["Content-Type"].startswith("application/manifest+json")
    manifest = json.loads(body)
    assert manifest["start_url"] == "/pocket/" and manifest["scope"] == "/pocket/"
    assert manifest["display"] == "standalone" and manifest["name"] and manifest["theme_color"].startswith("#")
    sizes = {}
    for icon in manifest["icons"]:
        status, headers, data = fetch(url + icon["src"])
        assert status == 200 and headers["Content-Type"] == icon["type"], icon
        if icon["type"] == "image/png":
            sizes[icon["sizes"]] = png_size(data)
    assert sizes == {"192x192": (192, 192), "512x512": (512, 512)}

    status, headers, body = fetch(url + "/pocket/sw.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert headers["Service-Worker-Allowed"] == "/pocket/" and b"/api/" in body
    # only the pocket console's own files: nothing else of the host's folder, however it is asked for
    for path in ("/pocket/../console_routes.py", "/pocket/%2e%2e%2fconsole_routes.py", "/pocket/app.py", "/pocket/.hidden"):
        assert fetch(url + path)[0] == 404, path


def test_installable_with_a_service_worker_that_keeps_the_shell_and_never_the_api(phones, ward_server_factory, make_ward):
    server = ward_server_factory(make_ward(terminals=1))
    page = phones("nurse")
    pocket_login(page, server.api_url, *NURSE)
    # the service worker is in charge of /pocket/ (and no wider)
    scope = page.evaluate("navigator.serviceWorker.ready.then(r => r.scope)")
    assert scope == server.api_url + "/pocket/"
    # Chromium's own verdict: the manifest parses and the app can be installed
    cdp = page.context.new_cdp_session(page)
    manifest = cdp.send("Page.getAppManifest")
    assert not manifest.get("errors"), manifest.get("errors")
    assert manifest["url"] == server.api_url + "/pocket/manifest.webmanifest"
    installable = cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]
    # a Playwright context is an incognito profile, where Chromium installs nothing: its only complaint
    assert [e["errorId"] for e in installable] == ["in-incognito"], installable

    # the icon a person sees on the home screen: the red call lamp on the dark card
    colours = page.evaluate("""async () => {
        const img = new Image(); img.src = "/pocket/icon-512.png"; await img.decode();
        const c = document.createElement("canvas"); c.width = c.height = 512;
        const ctx = c.getContext("2d"); ctx.drawImage(img, 0, 0);
        const at = (x, y) => Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3));
        return {lamp: at(256, 165), corner: at(8, 8), button: at(256, 360)};
    }""")
    assert colours["lamp"][0] > 200 and colours["lamp"][1] < 60, colours          # red
    assert max(colours["corner"]) < 40, colours                                     # dark
    assert colours["button"][1] > 150 and colours["button"][0] < 100, colours       # green

    # the shell is kept; nothing from /api/ ever is
    page.wait_for_function("""async () => {
        const cache = await caches.open((await caches.keys())[0]);
        return (await cache.keys()).length >= 8;
    }""")
    cached = page.evaluate("""async () => {
        const out = [];
        for (const name of await caches.keys()) {
            const cache = await caches.open(name);
            for (const r of await cache.keys()) out.push(new URL(r.url).pathname);
        }
        return out;
    }""")
    assert "/pocket/" in cached and "/pocket/app.js" in cached and "/console/sound.js" in cached, cached
    assert not [p for p in cached if p.startswith("/api/")], cached
    # every script the page loaded is in the shell: a module left out stops the page offline
    loaded = page.evaluate("""() => performance.getEntriesByType("resource").map((e) => new URL(e.name).pathname)
        .filter((p) => p.endsWith(".js") && p !== "/pocket/sw.js")""")
    assert "/console/hostlink.js" in loaded and not [p for p in loaded if p not in cached], (loaded, cached)

    # no network: the page still opens from the phone, and says at once that calls do not reach it
    page.context.set_offline(True)
    page.reload()
    expect(page.locator("#lost")).to_be_visible()
    expect(page.locator("#lost")).to_contain_text("NO CONNECTION")
    expect(page.locator("#lost")).to_contain_text("Calls are not reaching this phone")
    page.context.set_offline(False)
    # the network back: the session (cookie) is still good, the page goes live without a login
    expect(page.locator("body")).to_have_attribute("data-connection", "live", timeout=15_000)
    expect(page.locator("#lost")).to_be_hidden()
    expect(page.locator("#user-name")).to_have_text("Test nurse")


def test_the_screen_is_kept_on_while_on_duty_and_taken_again_when_back_on_screen(phones, ward_server_factory, make_ward):
    server = ward_server_factory(make_ward(terminals=1))
    page = phones("nurse")
    pocket_login(page, server.api_url, *NURSE)
    # Chromium's real Screen Wake Lock (a secure context: 127.0.0.1)
    expect(page.locator("body")).to_have_attribute("data-wake", "on")
    expect(page.locator("#duty")).to_contain_text("screen stays on")
    assert page.evaluate("pocket.wake.sentinel.type") == "screen" and page.evaluate("pocket.wake.acquired") == 1
    # the phone is locked or the app put aside: the browser lets go of the lock (headless Chromium
    # never hides a page, so the test lets go of it the same way, and sends the event a phone
    # sends when the page is on screen again)
    page.evaluate("pocket.wake.sentinel.release()")
    expect(page.locator("body")).to_have_attribute("data-wake", "off")
    expect(page.locator("#duty")).to_contain_text("screen may sleep")
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    expect(page.locator("body")).to_have_attribute("data-wake", "on")
    assert page.evaluate("pocket.wake.acquired") == 2
    assert page.evaluate("pocket.wake.sentinel.released") is False
    # logged out: off duty, the screen may sleep
    page.click("#logout")
    expect(page.locator("#login-screen")).to_be_visible()
    assert page.evaluate("pocket.wake.state") == "off" and page.evaluate("pocket.wake.sentinel") is None


def test_names_from_the_ward_config_show_as_text_on_the_phone(phones, ward_server_factory, make_ward, aloop):
    ward = make_ward(terminals=2)
    evil_room = '<img src=x onerror="window.pwned=1">Room <b>101</b>'
    evil_name = '<script>window.pwned=2</script>Nurse <i>X</i>'
    text = ward.config_path.read_text().replace('name = "Room 101"', f"name = '{evil_room}'")
    ward.config_path.write_text(text.replace('name = "Test nurse"', f"name = '{evil_name}'"))
    server = ward_server_factory(ward)
    page = phones("nurse")
    pocket_login(page, server.api_url, *NURSE)
    expect(page.locator("#user-name")).to_have_text(evil_name)
    t = sim_terminal(aloop, ward, 0)
    aloop.run(t.place_call(wardproto.PATIENT))
    where = page.locator('li.call[data-device="bed-101-1"] .where')
    expect(where).to_have_text(f"{evil_room} · Bed 1")
    assert page.locator("main img, header img, main script, header script").count() == 0
    assert page.evaluate("window.pwned") is None
