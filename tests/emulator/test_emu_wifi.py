"""network + socket shims and the radio proxy: a Wi-Fi cut stalls TCP silently; restoring resumes."""
import os
import socket
import threading
import time
from pathlib import Path

import pytest

WIFI = """
import network, time
w = network.WLAN(network.STA_IF)
w.active(True)
w.connect("ward", "secret")
for i in range(500):
    if w.isconnected():
        break
    time.sleep_ms(10)
print("wifi", w.isconnected(), w.ifconfig())
"""

CLIENT = WIFI + """
import asyncio, socket
PORT = %d
async def session():
    ai = socket.getaddrinfo("127.0.0.1", PORT)[0][-1]
    r, wr = await asyncio.open_connection("127.0.0.1", PORT)
    print("connected")
    n = 0
    while True:
        n += 1
        wr.write(b"ping %%d\\n" %% n)
        await wr.drain()
        try:
            line = await asyncio.wait_for(r.readline(), 1)
        except asyncio.TimeoutError:
            print("timeout", n)
            wr.close()
            return
        if not line:
            print("eof")
            return
        print("rx", line.decode().strip())
        await asyncio.sleep_ms(100)
async def main():
    for attempt in range(100):
        try:
            await session()
        except OSError as e:
            print("oserror", e)
        while not w.isconnected():
            await asyncio.sleep_ms(50)
        print("reconnect", attempt)
asyncio.run(main())
"""


class Echo:
    """A loopback TCP echo server that records what happens to its connections."""

    def __init__(self):
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.events = []
        self.lines = 0
        self.lock = threading.Lock()
        self.threads = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()

    def _accept(self):
        self.srv.settimeout(0.5)
        while self.srv.fileno() != -1:
            try:
                c, _ = self.srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.events.append("accept")
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()

    def _serve(self, c):
        c.settimeout(30)
        try:
            while True:
                d = c.recv(4096)
                if not d:
                    self.events.append("eof")
                    return
                with self.lock:
                    self.lines += d.count(b"\n")
                c.sendall(d)
        except ConnectionResetError:
            self.events.append("reset")
        except OSError as e:
            self.events.append(f"error {e}")
        finally:
            c.close()

    def close(self):
        self.srv.close()


@pytest.fixture
def echo():
    e = Echo()
    yield e
    e.close()


@pytest.mark.timeout(60)
def test_wifi_cut_stalls_and_restore_resumes(make_board, echo):
    b = make_board("wifi", {"main.py": CLIENT % echo.port})
    b.wait_console("wifi True ('127.0.0.1', '255.0.0.0', '127.0.0.1', '127.0.0.1')", 10)
    b.wait_console("rx ping 3", 10)
    assert b.state()["connections"] == 1
    m = b.console_mark()
    b.wifi(False)
    b.wait_console("timeout", 5, since=m)
    before = echo.lines
    # the host side sees nothing at all: no more data and no FIN/RST
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # watch the server for a second
        assert echo.lines == before and echo.events == ["accept"]
        time.sleep(0.05)
    assert b.state()["net_up"] is False
    b.wifi(True)
    b.wait_console("reconnect", 10, since=m)
    m2 = b.console_mark()
    b.wait_console("rx ping 3", 10, since=m2)
    assert echo.events.count("accept") == 2
    assert echo.lines > before


UDP = WIFI + """
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
dst = socket.getaddrinfo("127.0.0.1", %d)[0][-1]
for i in range(400):
    s.sendto(b"u%%d" %% i, dst)
    time.sleep_ms(10)
print("sent all")
"""


@pytest.mark.timeout(30)
def test_udp_is_dropped_while_the_link_is_down(make_board):
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    try:
        b = make_board("udp", {"main.py": UDP % rx.getsockname()[1]})
        rx.recv(100)  # the first datagram arrived
        b.wifi(False)
        t_cut = time.monotonic()
        rx.settimeout(0.3)
        got_late = []
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # a second of silence expected (after in-flight ones)
            try:
                d = rx.recv(100)
                if time.monotonic() - t_cut > 0.1:
                    got_late.append(d)
            except socket.timeout:
                pass
        assert got_late == []
        b.wifi(True)
        rx.settimeout(5)
        assert rx.recv(100).startswith(b"u")
    finally:
        rx.close()


@pytest.mark.timeout(30)
def test_connect_without_link_fails_and_wrong_ssid(make_board):
    main = """
import network, socket, time, errno
w = network.WLAN(network.STA_IF)
w.active(True)
try:
    s = socket.socket()
    s.connect(socket.getaddrinfo("127.0.0.1", 9)[0][-1])
except OSError as e:
    print("connect", e.errno == errno.EHOSTUNREACH)
w.connect("other", "x")
# the fleet server answers the attempt in its own time: up to 10 s on a busy machine
for i in range(1000):
    if w.status() != network.STAT_CONNECTING:
        break
    time.sleep_ms(10)
print("status", w.status())
print("mac", len(w.config("mac")))
"""
    b = make_board("nolink", {"main.py": main}, ssid="ward", key="secret")
    out = b.wait_console("mac 6", 30)
    assert "connect True" in out
    assert "status 201" in out


@pytest.mark.timeout(60)
def test_status_right_after_connect_is_connecting(make_board):
    # an ESP32's WLAN.status() is STAT_CONNECTING as soon as connect() returns; the emulator's
    # answer to the active() just before must not arrive late and turn it back to STAT_IDLE
    main = """
import network, time
w = network.WLAN(network.STA_IF)
seen = {}
for i in range(150):
    w.active(False)
    w.active(True)
    w.connect("other", "x")
    s = w.status()
    seen[s] = seen.get(s, 0) + 1
print("seen", sorted(seen.items()))
"""
    b = make_board("afterconnect", {"main.py": main}, ssid="ward", key="secret", connect_ms=2000)
    out = b.wait_console("seen", 50)
    line = [l for l in out.splitlines() if l.startswith("seen")][0]
    assert line == "seen [(1001, 150)]", line


IDLE_READER = WIFI + """
import asyncio, select, socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(socket.getaddrinfo("127.0.0.1", 0)[0][-1])
p = select.poll()
p.register(s, select.POLLIN)
t0 = time.ticks_ms()
r = p.poll(200)
print("poll", r, time.ticks_diff(time.ticks_ms(), t0) >= 190)
p.unregister(s)
s.close()
async def main():
    r, wr = await asyncio.open_connection("127.0.0.1", %d)
    print("waiting")
    try:
        await asyncio.wait_for_ms(r.read(1), 3000)
    except asyncio.TimeoutError:
        print("read timed out")
asyncio.run(main())
"""


@pytest.mark.timeout(30)
def test_waiting_on_a_socket_sleeps(make_board):
    """select.poll and asyncio wait on a shim socket's real descriptor: nothing ready → no wake-up
    (the native poll read a garbage descriptor from the Python subclass and spun at 100 % CPU)."""
    srv = socket.create_server(("127.0.0.1", 0))   # accepts (backlog) and never sends
    try:
        b = make_board("idle-reader", {"main.py": IDLE_READER % srv.getsockname()[1]})
        b.wait_console("poll [] True", 10)
        b.wait_console("waiting", 10)
        stat = Path(f"/proc/{b.state()['pid']}/stat")
        hz = os.sysconf("SC_CLK_TCK")

        def cpu():
            f = stat.read_text().rsplit(")", 1)[1].split()
            return (int(f[11]) + int(f[12])) / hz

        c0, t0 = cpu(), time.monotonic()
        time.sleep(1.5)
        used = (cpu() - c0) / (time.monotonic() - t0)
        assert used < 0.2, f"a board waiting on a socket used {used:.0%} of a core"
        b.wait_console("read timed out", 5)
    finally:
        srv.close()
