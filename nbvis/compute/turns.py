"""Threads take turns with a model: one lock per model, and :func:`exclusive` for its owner.

Every nbvis use of a model holds its lock (see :func:`nbvis.compute.probe.borrowed`): a background
job (on a thread, outside a kernel) holds it for a short run of steps at a time (one step, or
those of about 0.1 s) and gives the model back as it was between them. The owner takes the same
lock with :func:`exclusive` to do something the job must not see half-done, for example a
training step: the job waits before its next run of steps.

The lock lets waiting threads go first: a job that gives the model back and asks again at once
waits behind them, so it cannot starve the owner. On the main thread every wait and hand-over
is a critical section (:mod:`nbvis.compute.interrupts`): a Ctrl-C ends a wait, and never leaves
the lock held.
"""

from __future__ import annotations

import collections
import threading
import weakref

from torch import nn

from . import interrupts, walk

__all__ = ["Hold", "again_if_weights_change", "exclusive", "lock_of"]

#: seconds between two looks at a recorded Ctrl-C while the main thread waits for a model
POLL = 0.05


class ModelLock:
    """Re-entrant on one thread; a released lock goes to the thread that has waited longest."""

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._queue: collections.deque = collections.deque()

    def acquire(self, timeout: float) -> bool:
        """Take the lock, waiting at most ``timeout`` seconds (then False, and the place in the
        queue is given up)."""
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return True
            ticket = object()
            self._queue.append(ticket)
            try:
                if not self._cond.wait_for(lambda: self._owner is None and self._queue[0] is ticket, timeout):
                    return False
                self._owner, self._depth = me, 1
                return True
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()  # the next in the queue may be free to go now

    def release(self) -> None:
        with self._cond:
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()


_LOCKS: "weakref.WeakKeyDictionary[nn.Module, ModelLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def lock_of(model: nn.Module) -> ModelLock:
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = ModelLock()
        return lock


class Hold:
    """The context manager of :func:`exclusive`; :class:`nbvis.compute.borrow._Borrow` borrows the
    model on top of it (``_use`` after the lock is taken, ``_give_back_model`` before it is released).

    Taking and giving back are critical sections: a Ctrl-C that lands in them, even at the first
    instruction of ``__exit__``, waits until they are done, then reaches the caller.
    """

    __slots__ = ("model", "_lock")

    def __init__(self, model: nn.Module):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch nn.Module, not {type(model).__name__}")
        self.model = model

    def __enter__(self) -> nn.Module:
        interrupts.enter()
        self._take()  # on failure it gave everything back, left the section and raised
        interrupts.hold()  # the handler stays while the block runs: __exit__ is covered from its start
        interrupts.leave(deliver=False)  # an interrupt from here on is raised in the block, never here
        return self.model

    def _take(self) -> None:
        try:
            self._before_lock()
            lock = lock_of(self.model)
            while not lock.acquire(POLL):  # another thread's step: a Ctrl-C meanwhile ends the wait
                if interrupts.pending():
                    raise KeyboardInterrupt
        except BaseException:
            interrupts.leave()  # raises a recorded Ctrl-C instead, if one came
            raise
        self._lock = lock
        try:
            self._use()
            if interrupts.pending():
                raise KeyboardInterrupt
        except BaseException:  # an error or a Ctrl-C halfway: give everything back first
            self._give_back(self._used())
            interrupts.leave()
            raise

    def __exit__(self, *_exc) -> bool:
        interrupts.enter()
        self._give_back(True)
        interrupts.release()
        interrupts.leave()  # raises a Ctrl-C that came while the model was given back
        return False

    def _give_back(self, restore: bool) -> None:
        try:
            if restore:
                self._give_back_model()
        finally:
            self._lock.release()

    # what a borrow adds
    def _before_lock(self) -> None:
        pass

    def _use(self) -> None:
        pass

    def _used(self) -> bool:
        return False

    def _give_back_model(self) -> None:
        pass


interrupts.protect(Hold.__enter__, tail=True)
interrupts.protect(Hold.__exit__)


def exclusive(model: nn.Module) -> Hold:
    """``with nbvis.exclusive(model): ...``: no nbvis work uses the model meanwhile.

    A background job (outside a kernel: on a thread) finishes the steps it is in (one, or those of
    about 0.1 s), gives the model back exactly as it was, and waits before its next ones until the
    block ends. Use it around a training step while a view's job runs: the forward, ``backward()``
    and ``optimizer.step()`` then see the model as you left it (your train mode, no nbvis hooks),
    and the job never sees weights half-updated. Nested blocks on one thread nest.
    """
    return Hold(model)


def again_if_weights_change(model: nn.Module, compute, parameters: list | None = None, attempts: int = 50):
    """``compute()``, done again when it failed because another thread (the owner, training
    meanwhile) updated a weight in place between its forward and its backward (autograd refuses
    a backward through a changed tensor): the step is then done on the new weights, up to
    ``attempts`` times (an owner training flat out may land in several attempts in a row).
    ``parameters``: the model's, when the caller has them listed already (a borrow has)."""
    params = walk.parameters(model) if parameters is None else parameters
    for attempt in range(attempts):
        versions = [p._version for p in params]
        try:
            return compute()
        except RuntimeError:
            if attempt + 1 == attempts or versions == [p._version for p in params]:
                raise
