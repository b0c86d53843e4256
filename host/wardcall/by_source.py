"""BySource: connections grouped by the address they come from, oldest first, with a total —
what the caps on the terminal port (terminal_server.py) and the console API (web/listener.py)
count. The policy (which connection goes when a cap is reached) stays with each of them."""
from __future__ import annotations

from collections import OrderedDict
from typing import Generic, Iterator, TypeVar

C = TypeVar("C")


class BySource(Generic[C]):
    def __init__(self) -> None:
        self.count = 0
        self._by_source: dict[str, OrderedDict[C, None]] = {}

    def add(self, source: str, conn: C) -> OrderedDict[C, None]:
        """Count conn in; returns its address's connections, oldest first."""
        mine = self._by_source.setdefault(source, OrderedDict())
        mine[conn] = None
        self.count += 1
        return mine

    def remove(self, source: str, conn: C) -> None:
        mine = self._by_source.get(source)
        if mine is None or conn not in mine:
            return
        del mine[conn]
        self.count -= 1
        if not mine:
            del self._by_source[source]

    def groups(self) -> Iterator[OrderedDict[C, None]]:
        return iter(self._by_source.values())
