"""Ctrl-C that waits for the end of a critical section, then reaches the caller.

A ``KeyboardInterrupt`` is raised between two bytecodes of the main thread, wherever it is: at
the first instruction of an ``__exit__`` it skips the whole restore in it. Code that must run to
its end (giving a borrowed model back, settling a job's state) runs as a *critical section*:

    enter()        # the first call of the function
    ...            # an interrupt here is recorded, not raised
    leave()        # raises the recorded interrupt, if one came

While a section is open on the main thread, nbvis's SIGINT handler stands in for the one that was
set (usually :func:`signal.default_int_handler`): it records the interrupt and calls the previous
handler at :func:`leave`. Outside sections it calls the previous handler at once, so nothing
changes for the caller. :func:`protect` names functions whose first instructions (up to their
first call, that is before their ``enter()``) or last ones (after their last call) also defer an
interrupt. :func:`hold` keeps the handler installed across a stretch that is not itself critical
(a borrow's body), so that its ``__exit__`` is covered from its very first instruction.

Only the main thread gets signals (Python runs handlers there): on other threads, and where SIGINT
is ignored or not handled by Python, every function here does nothing.
"""

from __future__ import annotations

import _signal  # signal's functions without the enum wrapping (on every borrow, twice)
import dis
import signal
import threading
from types import CodeType, FrameType
from typing import Callable, Optional

__all__ = ["enter", "hold", "leave", "pending", "protect", "release", "checkpoint"]

_MAIN = threading.main_thread().ident

_critical = 0  # critical sections open on the main thread
_holds = 0  # stretches that keep the handler installed
_pending: Optional[tuple[int, Optional[FrameType]]] = None
_previous: Optional[Callable] = None  # the handler we stand in for
_head: dict[CodeType, tuple[int, int]] = {}  # code -> its first call: instructions up to its end defer
_tail: dict[CodeType, int] = {}  # code -> offset of its last call: instructions from it defer


def _calls(code: CodeType) -> list[tuple[int, int]]:
    """``(offset, end)`` of every call instruction (``end``: where the next instruction starts; a
    frame paused in the call has its ``f_lasti`` in between, on the call's inline caches)."""
    instructions = list(dis.get_instructions(code))
    return [(ins.offset, nxt.offset) for ins, nxt in zip(instructions, instructions[1:] + [None])
            if ins.opname.startswith("CALL") and nxt is not None]


def protect(function: Callable, *, head: bool = True, tail: bool = False) -> Callable:
    """Defer an interrupt that lands in ``function`` before its first call returned (``head``), or
    once its last call was made (``tail``: for an ``__enter__`` that must return once it changed
    something)."""
    code = function.__code__
    calls = _calls(code)
    if calls:
        if head:
            _head[code] = calls[0]
        if tail:
            _tail[code] = calls[-1][0]
    return function


def _deferring(frame: Optional[FrameType]) -> bool:
    """Whether an interrupt that lands in ``frame`` waits: in a critical section, or in (or called
    from) the first or last instructions of a protected function."""
    if _critical > 0:
        return True
    top = True
    while frame is not None:
        code, at = frame.f_code, frame.f_lasti
        # the frame that was running: before its first call; a caller: waiting on its first call
        head = _head.get(code)
        if head is not None and at < (head[0] if top else head[1]):
            return True
        tail = _tail.get(code)
        if tail is not None and at >= tail:
            return True
        frame, top = frame.f_back, False
    return False


def _handler(signum: int, frame: Optional[FrameType]) -> None:
    global _pending
    if _deferring(frame):
        if _pending is None:
            _pending = (signum, frame)
        return
    previous, _pending = _pending, None
    if previous is not None:  # recorded earlier and not raised yet: this one stands for both
        signum, frame = previous
    _call_previous(signum, frame)


def _call_previous(signum: int, frame: Optional[FrameType]) -> None:
    handler = _previous if callable(_previous) else signal.default_int_handler
    handler(signum, frame)


def _on_main() -> bool:
    return threading.get_ident() == _MAIN


def _install() -> None:
    global _previous
    current = _signal.getsignal(signal.SIGINT)
    if current is _handler or not callable(current):
        return
    _previous = current
    _signal.signal(signal.SIGINT, _handler)


def _uninstall() -> None:
    if _signal.getsignal(signal.SIGINT) is _handler:
        _signal.signal(signal.SIGINT, _previous)


def enter() -> None:
    """Open a critical section (nested ones nest)."""
    global _critical
    if not _on_main():
        return
    _install()
    _critical += 1


def leave(deliver: bool = True) -> None:
    """Close a critical section; when it was the outermost one, raise an interrupt that came meanwhile
    (with ``deliver=False`` it stays recorded for the next :func:`leave` or :func:`checkpoint`)."""
    global _critical
    if not _on_main():
        return
    _critical -= 1
    if _critical == 0 and deliver:
        _settle()


def hold() -> None:
    """Keep the handler installed until the matching :func:`release` (see the module's text)."""
    global _holds
    if not _on_main():
        return
    _install()
    _holds += 1


def release() -> None:
    global _holds
    if not _on_main():
        return
    _holds -= 1
    if _critical == 0:
        _settle()


def _settle() -> None:
    global _pending
    if _holds == 0:
        _uninstall()
    recorded, _pending = _pending, None
    if recorded is not None:
        _call_previous(*recorded)


def pending() -> bool:
    """Whether an interrupt came during the open critical sections and waits for their end."""
    return _pending is not None


def checkpoint() -> None:
    """Raise a recorded interrupt now, if no critical section is open (a safe point of long work)."""
    if _pending is not None and _critical == 0 and _on_main():
        _settle()
