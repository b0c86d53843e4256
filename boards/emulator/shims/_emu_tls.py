# Emulated ESP32 board: `tls` (and so `ssl`), so that MicroPython's own mbedTLS runs inside the
# board over a shim socket. The runner installs this module as sys.modules["tls"]: the builtin
# `tls` cannot be overridden by a file.
# Why: the shim socket (shims/socket.py) is a Python subclass of the native socket, and the
# builtin tls reaches its socket through the *native* stream protocol, which gets the Python
# instance and a garbage descriptor (a handshake written to fd 1 was seen). Here wrap_socket()
# puts such a socket inside a _Wire, an io.IOBase whose readinto/write/ioctl the native stream
# protocol does call, and which forwards them to the shim socket's methods. So the bytes that
# leave the board through the radio proxy are the TLS records mbedTLS wrote: nothing else.
# The TLS socket is handed out inside a TlsSocket, which knows what select.poll needs and the
# builtin cannot tell from Python: whether mbedTLS still holds bytes of a record (a read that
# filled the whole request) and whether a handshake waits to read (a write that could not go).
# shims/select.py waits for such a socket on its wire's descriptor (the builtin poll would call
# the TLS socket's ioctl every millisecond instead).
# What differs from an ESP32: mbedTLS here is the unix port's (Mbed TLS 3.6, its buffers from the
# C library's heap, its clock the host's); on an ESP32 it is ESP-IDF's (its buffers from the IDF
# heap, its clock the RTC). The MicroPython heap holds only the context and socket objects on both.
import io
import errno
import _emu

_real = _emu.rtls
_Native = _emu.rsocket.socket
_POLL = 3               # MP_STREAM_POLL
_CLOSE = 4              # MP_STREAM_CLOSE
_FILENO = 10            # MP_STREAM_GET_FILENO

for _n in dir(_real):
    if _n[0].isupper():
        globals()[_n] = getattr(_real, _n)
del _n


class _Wire(io.IOBase):
    """A shim socket as a stream the builtin tls can use."""

    def __init__(self, sock):
        self.s = sock
        self._p = _emu.rselect.poll()
        self._p.register(sock.fileno(), 0)
        self._fd = sock.fileno()

    def fileno(self):
        return self.s.fileno()

    def setblocking(self, flag):
        self.s.setblocking(flag)

    def readinto(self, buf):
        try:
            return self.s.readinto(buf)         # None: nothing yet (EAGAIN)
        except OSError as e:
            if e.errno == errno.EAGAIN:
                return None
            return 0                            # reset or gone: mbedTLS sees the end of the stream

    def write(self, buf):
        try:
            return self.s.write(buf)
        except OSError as e:
            if e.errno == errno.EAGAIN:
                return None
            return 0

    def ioctl(self, op, arg):
        if op == _POLL:
            self._p.modify(self._fd, arg)
            for _, ev in self._p.ipoll(0):
                return ev & (arg | 0x18)        # POLLHUP | POLLERR always count
            return 0
        if op == _CLOSE:
            self.s.close()
            return 0
        if op == _FILENO:
            return self.s.fileno()
        return -1


class TlsSocket:
    """The builtin TLS socket over a _Wire, with the two facts select.poll needs."""

    def __init__(self, ss, wire):
        self._ss = ss
        self._wire = wire
        self.pending = False        # the last read filled its request: more may be buffered
        self.wants_read = False     # the last write could not go: the handshake waits to read

    def fileno(self):
        return self._wire.fileno()

    def read(self, n=-1):
        d = self._ss.read(n)
        self.pending = d is not None and n > 0 and len(d) == n
        return d

    def readinto(self, buf, n=-1):
        r = self._ss.readinto(buf) if n < 0 else self._ss.readinto(buf, n)
        self.pending = r is not None and r > 0 and r == (len(buf) if n < 0 else n)
        return r

    def readline(self):
        return self._ss.readline()

    def write(self, buf):
        r = self._ss.write(buf)
        self.wants_read = r is None
        return r

    def setblocking(self, flag):
        self._ss.setblocking(flag)

    def cipher(self):
        return self._ss.cipher()

    def getpeercert(self, binary_form=True):
        return self._ss.getpeercert(binary_form)

    def close(self):
        self._ss.close()


_emu.tls_type = TlsSocket


class SSLContext:
    def __init__(self, protocol):
        self._c = _real.SSLContext(protocol)

    @property
    def verify_mode(self):
        return self._c.verify_mode

    @verify_mode.setter
    def verify_mode(self, mode):
        self._c.verify_mode = mode

    @property
    def verify_callback(self):
        return self._c.verify_callback

    @verify_callback.setter
    def verify_callback(self, fn):
        self._c.verify_callback = fn

    def load_verify_locations(self, cadata):
        return self._c.load_verify_locations(cadata)

    def load_cert_chain(self, cert, key):
        return self._c.load_cert_chain(cert, key)

    def get_ciphers(self):
        return self._c.get_ciphers()

    def set_ciphers(self, ciphers):
        return self._c.set_ciphers(ciphers)

    def wrap_socket(self, sock, server_side=False, do_handshake_on_connect=True, server_hostname=None):
        if not isinstance(sock, _Native) or type(sock) is _Native:
            return self._c.wrap_socket(sock, server_side=server_side,
                                       do_handshake_on_connect=do_handshake_on_connect,
                                       server_hostname=server_hostname)
        wire = _Wire(sock)
        ss = self._c.wrap_socket(wire, server_side=server_side, do_handshake_on_connect=do_handshake_on_connect,
                                 server_hostname=server_hostname)
        return TlsSocket(ss, wire)
