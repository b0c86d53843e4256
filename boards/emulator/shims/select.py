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
import _emu

_real = _emu.rselect  # the builtins
_rsocket = _emu.rsocket

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
        k = self._key(obj)
        if k is not obj:
            self._obj[k] = obj
        self._p.register(k, eventmask)

    def modify(self, obj, eventmask):
        self._p.modify(self._key(obj), eventmask)

    def unregister(self, obj):
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

    def poll(self, timeout=-1):
        r = self._p.poll(timeout)
        m = self._obj
        if m:
            r = [(m.get(o, o) if type(o) is int else o, ev) for o, ev in r]
        return r

    def ipoll(self, timeout=-1, flags=0):
        m = self._obj
        if not m:
            return self._p.ipoll(timeout, flags)
        r = _EMPTY
        for o, ev in self._p.ipoll(timeout, flags):
            if r is _EMPTY:
                r = []
            r.append((m.get(o, o) if type(o) is int else o, ev))
        return r
