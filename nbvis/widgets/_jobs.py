"""Background work for the views: the job runner and the mixin of views that run one job.

A :class:`Job` drives a generator of steps without blocking the kernel. A :class:`JobView` is a
view whose work runs as a job, with one vocabulary for all of them: ``state`` (idle, running,
stopped, done, error), :meth:`~JobView.start`, :meth:`~JobView.stop`, :meth:`~JobView.wait`, and
the constructor flag ``autostart``.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import time
import weakref
from typing import Any, Callable, Iterator

import traitlets

from nbvis.compute import interrupts

__all__ = ["STATES", "Job", "JobView", "Throttle", "running_loop"]

STATES = ("idle", "running", "stopped", "done", "error")
#: seconds between two looks at the work a job gives way to (see Job.give_way)
HOLD_POLL = 0.01


class Throttle:
    """``ready()`` is true at most once per ``interval`` seconds (the first call is always ready)."""

    def __init__(self, interval: float):
        self.interval = interval
        self._last = float("-inf")

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            return True
        return False


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


_RUNNING: "weakref.WeakSet[Job]" = weakref.WeakSet()


@atexit.register
def _stop_running_jobs() -> None:
    # A daemon thread still inside torch when the interpreter finalizes aborts the process, and so
    # does a loop's job left half-way (its suspended steps hold tensors torch cannot free then).
    jobs = list(_RUNNING)
    for job in jobs:
        if job.running:
            job.stop()
    for job in jobs:  # and let every job's thread leave torch before the interpreter goes
        thread = job._thread
        if thread is not None and thread is not threading.current_thread() and thread.is_alive():
            thread.join(10)


class Job:
    """Drive a generator of steps without blocking the kernel.

    In a Jupyter kernel (a running asyncio loop on this thread) the steps run as an asyncio task
    that yields to the loop between steps, so the kernel answers other cells and the browser's
    messages meanwhile, and every trait update is sent from the main thread (this works in Colab
    and under ipykernel 7). Outside a kernel the steps run on a daemon thread.

    ``on_step(item)`` gets each yielded item; ``on_done(result)`` the generator's return value
    (only when it finished); ``on_error(exc)`` an exception raised by a step or by ``on_step``,
    any ``BaseException`` included: a ``KeyboardInterrupt`` (Ctrl-C) ends the job as
    ``"stopped"``, anything else as ``"error"``; ``on_stop(reason)`` a stop that was asked for
    (``reason``: the interrupt that asked for it during ``wait()``, or None).
    ``stop()`` asks the job to end before its next step and closes the generator (so its
    ``finally`` blocks run). ``wait()`` finishes the job (driving the remaining steps itself when
    it is called from the loop's own thread, where waiting would otherwise deadlock) and raises
    the exception that ended it; a Ctrl-C during ``wait()`` stops the job and reaches the caller.
    """

    def __init__(
        self,
        steps: Iterator[Any],
        *,
        on_step: Callable[[Any], None] | None = None,
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        on_stop: Callable[[BaseException | None], None] | None = None,
    ):
        self._steps = steps
        self._on_step = on_step
        self._on_done = on_done
        self._on_error = on_error
        self._on_stop = on_stop
        self._stop = False
        self._stop_reason: BaseException | None = None
        # re-entrant: on_step may stop or wait for its own job (stop() advances the job on the loop)
        self._lock = threading.RLock()
        self._task: asyncio.Task | None = None
        self._thread: threading.Thread | None = None
        self._busy: Callable[[], bool] | None = None  # work to give way to (see give_way)
        # set when the thread's loop has ended; waited on instead of Thread.join, which an
        # interrupt can leave believing a live thread ended (CPython 3.11, bpo-45274)
        self._ended = threading.Event()
        self.state = "idle"  # idle | running | stopped | done | error
        self.result: Any = None
        self.exception: BaseException | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"

    def start(self) -> "Job":
        if self.state != "idle":
            raise RuntimeError(f"this job was already started (it is {self.state})")
        self.state = "running"
        loop = running_loop()
        _RUNNING.add(self)
        if loop is not None:
            self._task = loop.create_task(self._run_async())
        else:
            self._thread = threading.Thread(target=self._run_thread, name="nbvis-job", daemon=True)
            self._thread.start()
        return self

    def give_way(self, busy: Callable[[], bool]) -> "Job":
        """Hold the steps run in the background back while ``busy()`` is true (other work that
        should come first, as the panels of a new selection); once it is false, they go on.
        A step in progress and :meth:`stop` are not held back, nor :meth:`wait` on the loop's
        own thread (it drives the steps itself); on a thread, ``wait()`` waits for ``busy()``."""
        self._busy = busy
        return self

    def _held(self) -> bool:
        busy = self._busy
        if busy is None or self._stop or self.state != "running":
            return False
        try:
            if busy():
                return True
        except Exception:  # a question that fails holds nothing back
            pass
        self._busy = None
        return False

    async def _run_async(self) -> None:
        while True:
            while self._held():
                await asyncio.sleep(HOLD_POLL)
            if not self._advance():
                return
            await asyncio.sleep(0)

    def _run_thread(self) -> None:
        try:
            while True:
                while self._held():
                    time.sleep(HOLD_POLL)
                if not self._advance():
                    break
        except BaseException as exc:  # a callback that failed as the job ended: wait() raises it
            if self.exception is None:
                self.exception = exc
        finally:
            self._ended.set()

    def _finish(self, state: str) -> None:
        self.state = state
        close = getattr(self._steps, "close", None)
        if close is not None:
            try:
                close()
            except BaseException as exc:  # a generator that fails while closing must not hide the real outcome
                if not isinstance(exc, Exception) and self.exception is None:
                    self.exception = exc  # but an interrupt that lands here still reaches wait()

    def _advance(self) -> bool:
        """Run one step; False once the job has ended."""
        with self._lock:
            if self.state != "running":
                return False
            outcome = ("stop", self._stop_reason) if self._stop else self._next()
            return self._settle(*outcome)  # a Ctrl-C from here on waits for the state to be settled

    def _next(self) -> tuple[str, Any]:
        """The step itself (interruptible): what came of it."""
        try:
            return "step", next(self._steps)
        except StopIteration as end:
            return "done", end.value
        except BaseException as exc:  # Ctrl-C and SystemExit too: never left "running"
            return "error", exc

    def _settle(self, kind: str, value: Any) -> bool:
        """Record what came of a step and tell the owner, as one critical section: a Ctrl-C that
        lands here (after the step) is raised once the state and the callbacks are done."""
        interrupts.enter()
        try:
            if kind == "step":
                try:
                    if self._on_step is not None:
                        self._on_step(value)
                    return True
                except BaseException as exc:
                    kind, value = "error", exc
            if kind == "done":
                self.result = value
                self._finish("done")
                callback = self._on_done
            elif kind == "stop":
                self._finish("stopped")
                callback = self._on_stop
            else:
                self.exception = value
                self._finish("stopped" if isinstance(value, KeyboardInterrupt) else "error")
                callback = self._on_error
            if callback is not None:
                callback(value)
            return False
        finally:
            interrupts.leave()

    def stop(self, reason: BaseException | None = None) -> None:
        """Ask the job to end before its next step (a step that is running finishes first)."""
        if not self._stop:
            self._stop_reason = reason
        self._stop = True
        if self._thread is not None and self._thread is not threading.current_thread():
            self._ended.wait()
        elif self._thread is None and self.state == "running":
            # No step is running on this thread now, and with the stop asked, advancing runs
            # none: it ends the job at once (the loop's task then finds it ended).
            self._advance()

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the job ends; return its result, or raise the exception that ended it."""
        try:
            if self._thread is not None:
                if not self._ended.wait(timeout):
                    raise TimeoutError(f"the job did not finish within {timeout} s")
            else:
                deadline = None if timeout is None else time.monotonic() + timeout
                while self._advance():
                    if deadline is not None and time.monotonic() > deadline:
                        raise TimeoutError(f"the job did not finish within {timeout} s")
        except KeyboardInterrupt as interrupt:  # Ctrl-C while waiting (outside a step): the person wants it stopped
            if self.running:
                self.stop(reason=interrupt)
            raise
        if self.exception is not None:
            raise self.exception
        return self.result


class JobView(traitlets.HasTraits):
    """Mixin of the views whose work runs in the background as one :class:`Job` at a time.

    ``state`` is ``"idle"`` before the first run, ``"running"``, then ``"done"`` (only when the
    work finished), ``"stopped"`` (by :meth:`stop`, the view's stop button, or a Ctrl-C: then
    the reason is shown in the view's error area) or ``"error"`` (the exception is shown there,
    and :meth:`wait` raises it, as it raises the interrupt).

    A view provides :meth:`start` (it builds the steps and calls :meth:`_launch_job`),
    ``_job_step(item)`` for each step's item, and ``_publish()`` that sends the final state.
    """

    state = traitlets.Enum(STATES, default_value="idle", read_only=True).tag(sync=True)

    _job: Job | None = None
    _busy: Callable[[], bool] | None = None  # what the next job gives way to

    # ----- the vocabulary --------------------------------------------------------------------

    def start(self):  # pragma: no cover - every view defines it
        raise NotImplementedError

    def stop(self):
        """Stop after the step in progress; what was computed so far stays."""
        self._halt_job()
        return self

    def wait(self, timeout: float | None = None):
        """Block until the work ends (in a notebook cell: run the remaining steps now); return the
        view's result (the view itself, or what it computed).

        Raises the exception that ended the work, if one did. A Ctrl-C anywhere in here stops the
        work (``state`` "stopped", unless it had finished) and reaches the caller.
        """
        try:  # from the first instruction on: a Ctrl-C before, in or after the job's wait stops it
            job = self._job
            if job is not None:
                self._wait_for(job, timeout)
            result = self._wait_result()
        except KeyboardInterrupt as interrupt:
            job = self._job
            if job is not None and job.running:
                job.stop(reason=interrupt)
            raise
        return result

    def _wait_for(self, job: Job, timeout: float | None) -> None:
        try:
            job.wait(timeout)
        finally:
            self._resync()  # NbvisWidget: the final state, recorded by nbconvert --execute too

    def close(self):
        self._halt_job()
        super().close()

    # ----- for the views ---------------------------------------------------------------------

    def _wait_result(self):
        return self

    def _launch_job(self, steps: Iterator[Any]) -> Job:
        self._job = Job(
            steps, on_step=self._job_step, on_done=self._job_done, on_error=self._job_error,
            on_stop=self._job_stopped,
        )
        busy, self._busy = self._busy, None
        if busy is not None:
            self._job.give_way(busy)
        self.set_trait("state", "running")
        return self._job.start()

    def _give_way(self, busy: Callable[[], bool]) -> None:
        """The next job's steps wait while ``busy()`` is true (see :meth:`Job.give_way`)."""
        self._busy = busy

    def _halt_job(self, restart: bool = False) -> None:
        """Stop the job; with ``restart`` (a new run replaces the results) the state is "idle"
        until the new run starts, so an interrupt in between never leaves an old "done"."""
        job = self._job
        if job is not None and job.running:
            job.stop()  # its on_stop reports "stopped" (not when it ended before the stop took)
        if restart:
            self.set_trait("state", "idle")

    def _job_step(self, item) -> None:  # pragma: no cover - every view defines it
        raise NotImplementedError

    def _publish(self) -> None:  # pragma: no cover - every view defines it
        raise NotImplementedError

    def _job_done(self, _result) -> None:
        self._job_ended("done")

    def _job_error(self, exc: BaseException) -> None:
        if isinstance(exc, KeyboardInterrupt):
            self._job_stopped(exc)
        else:
            self._report(exc)
            self._job_ended("error")

    def _job_stopped(self, reason: BaseException | None) -> None:
        if reason is not None:  # an interrupt, not the stop button: say why it did not finish
            self.error = f"stopped by {type(reason).__name__} (Ctrl-C): the run did not finish"
        self._job_ended("stopped")

    def _job_ended(self, state: str) -> None:
        try:
            self._publish()
        finally:  # an interrupt while publishing must not leave the view saying "running"
            self.set_trait("state", state)

    # ----- commands from the view ----------------------------------------------------------------

    def _cmd_start(self) -> None:
        self.start()

    def _cmd_stop(self) -> None:
        self.stop()


interrupts.protect(Job._settle)
