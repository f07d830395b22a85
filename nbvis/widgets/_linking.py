"""The re-entry flag of views linked both ways (the Explorer and its panels)."""

from __future__ import annotations


class Linking:
    """True while linked views are being updated: a change made inside ``with linking:`` does not
    trigger the reverse link (its observer starts with ``if linking: return``). Nests."""

    def __init__(self) -> None:
        self._depth = 0

    def __bool__(self) -> bool:
        return self._depth > 0

    def __enter__(self) -> "Linking":
        self._depth += 1
        return self

    def __exit__(self, *_exc) -> None:
        self._depth -= 1
