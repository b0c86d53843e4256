# Emulated ESP32 board: `socket`, so that the supervisor can cut the radio link.
# - TCP connect() goes to the supervisor's radio proxy on loopback (a header line tells it the real
#   destination); while the link is down the proxy stops reading both sides: the connection stalls
#   silently, as on a Wi-Fi drop. connect() while the station has no link fails with EHOSTUNREACH.
# - UDP: datagrams are dropped (both ways) while the link is down, or at random with the
#   supervisor's configured loss rate.
# - socket.socket subclasses the native socket, so select.poll and asyncio streams keep working.
# - getaddrinfo keeps the unix port's raw addresses; connect/bind/sendto also take (host, port)
#   tuples as on the ESP32, and recvfrom/accept return (ip, port) tuples as on the ESP32.
import errno
import _emu

_real = _emu.rsocket  # the builtin

for _n in dir(_real):
    if _n[0].isupper():
        globals()[_n] = getattr(_real, _n)
del _n

getaddrinfo = _real.getaddrinfo
inet_ntop = _real.inet_ntop
inet_pton = _real.inet_pton
sockaddr = _real.sockaddr
_Base = _real.socket
_STREAM = _real.SOCK_STREAM
_PROXY = None


def _raw(addr):
    if isinstance(addr, tuple):
        return _real.getaddrinfo(addr[0], addr[1])[0][-1]
    return addr


def _tuple(raw):
    if isinstance(raw, tuple):
        return raw
    try:
        f, a, p = _real.sockaddr(raw)
        return (_real.inet_ntop(f, a), p)
    except Exception:
        return raw


def _lost():
    # True if a datagram should be dropped now (link down or simulated loss)
    _emu.service()
    if not _emu.net:
        return True
    if _emu.udp_loss:
        import random

        return random.random() < _emu.udp_loss
    return False


class socket(_Base):
    def __init__(self, af=_real.AF_INET, type=_STREAM, proto=0):
        super().__init__(af, type, proto)
        self._type = type
        self._blocking = True
        self._timeout = None

    def setblocking(self, flag):
        self._blocking = bool(flag)
        self._timeout = None
        super().setblocking(flag)

    def settimeout(self, t):
        self._timeout = t
        self._blocking = t is None or t > 0
        super().settimeout(t)

    def connect(self, addr):
        global _PROXY
        raw = _raw(addr)
        if self._type != _STREAM or not _emu.PROXY_PORT:
            return super().connect(raw)
        _emu.service()
        if not _emu.net:
            raise OSError(errno.EHOSTUNREACH)
        ip, port = _tuple(raw)
        if _PROXY is None:
            _PROXY = _real.getaddrinfo("127.0.0.1", _emu.PROXY_PORT)[0][-1]
        super().settimeout(5)
        try:
            super().connect(_PROXY)
            super().write(("WCPX %s %s %s %d\n" % (_emu.NAME, _emu.GEN, ip, port)).encode())
        finally:
            if self._timeout is not None:
                super().settimeout(self._timeout)
            else:
                super().setblocking(self._blocking)

    def bind(self, addr):
        return super().bind(_raw(addr))

    def accept(self):
        s, a = super().accept()
        return s, _tuple(a)

    def sendto(self, data, addr):
        if _lost():
            return len(data)
        return super().sendto(data, _raw(addr))

    def send(self, data):
        if self._type != _STREAM and _lost():
            return len(data)
        return super().send(data)

    def recvfrom(self, n):
        if self._type == _STREAM:
            d, a = super().recvfrom(n)
            return d, _tuple(a)
        for _ in range(100000):  # datagrams arriving while the link is down are lost
            d, a = super().recvfrom(n)
            if not _lost():
                return d, _tuple(a)
        raise OSError(errno.EAGAIN)

    def recv(self, n):
        if self._type == _STREAM:
            return super().recv(n)
        for _ in range(100000):
            d = super().recv(n)
            if not _lost():
                return d
        raise OSError(errno.EAGAIN)
