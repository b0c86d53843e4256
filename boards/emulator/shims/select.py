# Emulated ESP32 board: `select`, so that select.poll (and therefore asyncio streams) waits on a
# shim socket's real file descriptor.
# Why: socket.socket (shims/socket.py) is a Python subclass of the native socket. The builtin
# poll asks an object for its descriptor through the *native* stream protocol, which receives the
# Python instance instead of the native socket inside it and reads a garbage "fd" (25 for a shim
# socket: the header word of the instance's attribute dict). poll() then answers POLLNVAL at once,
# asyncio wakes the waiting reader, the read gets EAGAIN, and the board spins at 100 % CPU for as
# long as it waits on a socket (for the firmware: the whole time the link to the host is up).
# Here poll registers such sockets by their real descriptor (fileno(), a method call, reaches the
# native object) and maps the descriptor back to the socket in poll()/ipoll(). Everything else
# (native objects, integer descriptors) goes to the builtin poll unchanged.
# Not allocating while idle: ipoll() returns the builtin iterator when no shim socket is
# registered and an empty tuple when nothing is ready.
# TLS sockets (shims/_emu_tls.py TlsSocket: the builtin tls over a shim socket) have no
# descriptor the builtin poll can use, so it would poll them every millisecond (the board at full
# speed for as long as its link is up). Here they are waited for on their wire's descriptor:
# a reader is ready at once while mbedTLS may still hold bytes of a record, else when the wire
# has bytes; a writer is ready when the wire can take bytes, unless the handshake waits to read
# (then when the wire has bytes). POLLOUT is added while the wire is full, so TLS can flush.
import _emu

_real = _emu.rselect  # the builtins
_rsocket = _emu.rsocket
_POLLIN = _real.POLLIN
_POLLOUT = _real.POLLOUT

for _n in dir(_real):
    if _n[0].isupper():
        globals()[_n] = getattr(_real, _n)
del _n

select = getattr(_real, "select", None)
_Native = _rsocket.socket
_EMPTY = ()


class poll:
    def __init__(self):
        self._p = _real.poll()
        self._obj = {}  # real fd -> shim socket registered by that fd
        self._ev = {}  # what is registered in _p -> its events (mirrored in _wait)
        self._tls = None  # TLS socket -> events, once any is registered
        self._wait = None  # builtin poll of the TLS sockets' wires and everything in _p
        self._probe = None

    def _key(self, obj):
        # a Python subclass of the native socket: its real descriptor; anything else: itself
        if isinstance(obj, _Native) and type(obj) is not _Native:
            m = self._obj
            for fd in m:  # already registered (maybe closed since): the fd it was registered by
                if m[fd] is obj:
                    return fd
            fd = obj.fileno()
            if fd < 0:
                raise OSError(9)  # EBADF: a closed socket
            return fd
        return obj

    def register(self, obj, eventmask=_real.POLLIN | _real.POLLOUT):
        if type(obj) is _emu.tls_type:
            if self._tls is None:
                self._tls = {}
                self._wait, self._probe = _real.poll(), _real.poll()
                for k in self._ev:
                    self._wait.register(k, self._ev[k])
            if obj.fileno() < 0:
                raise OSError(9)
            self._tls[obj] = [eventmask, obj.fileno()]
            return
        k = self._key(obj)
        if k is not obj:
            self._obj[k] = obj
        self._p.register(k, eventmask)
        self._ev[k] = eventmask
        if self._wait is not None:
            self._wait.register(k, eventmask)

    def modify(self, obj, eventmask):
        if self._tls is not None and obj in self._tls:
            self._tls[obj][0] = eventmask
            return
        k = self._key(obj)
        self._p.modify(k, eventmask)
        self._ev[k] = eventmask
        if self._wait is not None:
            self._wait.modify(k, eventmask)

    def unregister(self, obj):
        if self._tls is not None and obj in self._tls:
            del self._tls[obj]
            return
        if isinstance(obj, _Native) and type(obj) is not _Native and obj.fileno() < 0:
            for fd in self._obj:
                if self._obj[fd] is obj:
                    break
            else:
                return  # closed, and its descriptor was registered again by another socket
        k = self._key(obj)
        if k is not obj:
            self._obj.pop(k, None)
        self._p.unregister(k)
        self._ev.pop(k, None)
        if self._wait is not None:
            self._wait.unregister(k)

    def _map(self, r):
        m = self._obj
        if m:
            r = [(m.get(o, o) if type(o) is int else o, ev) for o, ev in r]
        return r

    def _writable(self, fd):
        p = self._probe
        p.register(fd, _POLLOUT)
        ok = False
        for _ in p.ipoll(0):
            ok = True
        p.unregister(fd)
        return ok

    def _tls_poll(self, timeout):
        rt = _emu.rtime
        start = rt.ticks_ms()
        while True:
            ready = []
            waits = {}  # wire fd -> (TLS socket, what it waits for)
            for t in self._tls:
                want, fd = self._tls[t]
                if t.fileno() < 0:
                    ready.append((t, _real.POLLHUP))    # closed: let its reader find out
                    continue
                can_write = self._writable(fd)
                if want & _POLLIN and t.pending:
                    ready.append((t, _POLLIN))
                elif want & _POLLOUT and can_write and not t.wants_read:
                    ready.append((t, _POLLOUT))
                elif want:
                    waits[fd] = (t, want)
                    self._wait.register(fd, _POLLIN if can_write else _POLLIN | _POLLOUT)
            if ready:
                for fd in waits:
                    self._wait.unregister(fd)
                rest = self._p.poll(0)
                return ready + self._map(rest) if rest else ready
            left = -1
            if timeout >= 0:
                left = timeout - rt.ticks_diff(rt.ticks_ms(), start)
                if left < 0:
                    left = 0
            got = self._wait.poll(left)
            for fd in waits:
                self._wait.unregister(fd)
            out = []
            for o, ev in got:
                w = waits.get(o) if type(o) is int else None
                if w is None:
                    out.append((self._obj.get(o, o) if type(o) is int else o, ev))
                elif ev & (_POLLIN | _real.POLLHUP | _real.POLLERR):
                    out.append((w[0], w[1] | (ev & (_real.POLLHUP | _real.POLLERR))))
                    w[0].wants_read = False
            if out:
                return out
            if left >= 0 and rt.ticks_diff(rt.ticks_ms(), start) >= timeout:
                return []

    def poll(self, timeout=-1):
        if self._tls:
            return self._tls_poll(timeout)
        return self._map(self._p.poll(timeout))

    def ipoll(self, timeout=-1, flags=0):
        if self._tls:
            return self._tls_poll(timeout)
        m = self._obj
        if not m:
            return self._p.ipoll(timeout, flags)
        r = _EMPTY
        for o, ev in self._p.ipoll(timeout, flags):
            if r is _EMPTY:
                r = []
            r.append((m.get(o, o) if type(o) is int else o, ev))
        return r
