"""A page served from another port of the ward PC, opened in the same browser as a logged-in
nurse's console, tries every way a page can send a request to the console's host: it must
change nothing (no acknowledge, no silence, no reboot, no update), while the console itself
still can. SameSite cookies do not separate two ports of one host, so the host's own checks
(Origin, JSON content type, the session's request token) are what is tried here."""
from __future__ import annotations

import json
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from tests.console.conftest import login, sim_terminal
from tests.fixtures.host import ADMIN, free_port
from wardcall.protocol import wardproto

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

ATTACK = """<!doctype html><html><body><h1>cat pictures</h1>
<form id="f" method="POST" target="sink" enctype="text/plain"><input name='{"seconds": 600, "x": "' value='"}'></form>
<iframe name="sink"></iframe>
<script>
const HOST = "%(host)s";
const results = {};
async function attempt(name, path, init) {
  try {
    const r = await fetch(HOST + path, { credentials: "include", ...init });
    results[name] = r.type === "opaque" ? "opaque" : r.status;
  } catch (e) { results[name] = "blocked: " + e.name; }
}
(async () => {
  // a "simple" request: no preflight, the browser sends the cookie
  await attempt("silence_text", "/api/silence", { method: "POST", mode: "no-cors", headers: { "Content-Type": "text/plain" }, body: '{"seconds": 600}' });
  await attempt("ack_form", "/api/calls/1/acknowledge", { method: "POST", mode: "no-cors", body: new URLSearchParams({ a: "1" }) });
  await attempt("ack_empty", "/api/calls/1/acknowledge", { method: "POST", mode: "no-cors" });
  await attempt("reboot_text", "/api/terminals/bed-101-1/command", { method: "POST", mode: "no-cors", headers: { "Content-Type": "text/plain" }, body: '{"command": "reboot", "password": "guess"}' });
  await attempt("ota_text", "/api/ota/updates", { method: "POST", mode: "no-cors", headers: { "Content-Type": "text/plain" }, body: '{"package": {"version": "evil", "files": []}}' });
  await attempt("end_sessions", "/api/users/nurse/sessions/end", { method: "POST", mode: "no-cors" });
  // JSON: needs a CORS preflight the host never grants
  await attempt("silence_json", "/api/silence", { method: "POST", headers: { "Content-Type": "application/json" }, body: '{"seconds": 600}' });
  await attempt("logout_json", "/api/logout", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
  // reading the state (to learn the request token) is refused by the browser's same-origin policy
  await attempt("read_me", "/api/me", { method: "GET" });
  // a classic form post, navigating a hidden frame
  const f = document.getElementById("f");
  f.action = HOST + "/api/silence";
  f.submit();
  await new Promise((ok) => setTimeout(ok, 300));
  document.body.dataset.done = JSON.stringify(results);
})();
</script></body></html>"""


def serve_attack_page(host_url: str) -> tuple[ThreadingHTTPServer, str]:
    body = (ATTACK % {"host": host_url}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{port}/"


def recorded(database, kind: str) -> int:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM events WHERE kind = ?", (kind,)).fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize("user", ["nurse", "admin"])
def test_a_page_on_another_port_cannot_act_for_a_logged_in_console(browser, page, ward_server_factory, make_ward, aloop, user):
    ward = make_ward(terminals=2)
    server = ward_server_factory(ward)
    login(page, server.api_url, user, ADMIN[1])      # every test user has the same password
    term = sim_terminal(aloop, ward, 0)
    aloop.run(term.place_call(wardproto.PATIENT))
    expect(page.locator("#calls li.call")).to_have_count(1)

    attacker, url = serve_attack_page(server.api_url)
    try:
        evil = browser.new_page()
        evil.goto(url)
        evil.wait_for_function("document.body.dataset.done !== undefined", timeout=10_000)
        results = json.loads(evil.locator("body").get_attribute("data-done"))
        evil.close()
    finally:
        attacker.shutdown()

    # the browser could not even read an answer; the host changed nothing
    assert results["silence_json"].startswith("blocked") and results["logout_json"].startswith("blocked"), results
    assert results["read_me"].startswith("blocked"), results
    state = aloop.run(_state(server))
    assert state["calls"][0]["state"] == "placed", state["calls"]
    assert state["sound"]["silenced_until"] is None, state["sound"]
    for kind in ("silence", "call_acknowledged", "command_sent", "ota_job_started", "console_logout", "console_sessions_ended"):
        assert recorded(ward.database, kind) == 0, kind
    assert "may not act on this console" in server.log_text()

    # and the console itself still can: still logged in, it acknowledges and silences
    page.locator("#calls li.call .btn-ack").click()
    expect(page.locator("#calls li.call")).to_have_attribute("data-state", "acknowledged")
    assert recorded(ward.database, "call_acknowledged") == 1


async def _state(server):
    api = await server.login()
    try:
        return await api.state()
    finally:
        await api.close()
