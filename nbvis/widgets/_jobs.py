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

__all__ = ["STATES", "Job", "JobView", "Throttle", "running_loop"]

STATES = ("idle", "running", "stopped", "done", "error")


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


_THREAD_JOBS: "weakref.WeakSet[Job]" = weakref.WeakSet()


@atexit.register
def _stop_thread_jobs() -> None:
    # A daemon thread still inside torch when the interpreter finalizes aborts the process.
    for job in list(_THREAD_JOBS):
        job.stop()


class Job:
    """Drive a generator of steps without blocking the kernel.

    In a Jupyter kernel (a running asyncio loop on this thread) the steps run as an asyncio task
    that yields to the loop between steps, so the kernel answers other cells and the browser's
    messages meanwhile, and every trait update is sent from the main thread (this works in Colab
    and under ipykernel 7). Outside a kernel the steps run on a daemon thread.

    ``on_step(item)`` gets each yielded item; ``on_done(result)`` the generator's return value;
    ``on_error(exc)`` an exception raised by a step (or by ``on_step``). ``stop()`` asks the job
    to end before its next step and closes the generator (so its ``finally`` blocks run).
    ``wait()`` finishes the job (driving the remaining steps itself when it is called from the
    loop's own thread, where waiting would otherwise deadlock) and re-raises a step's exception.
    """

    def __init__(
        self,
        steps: Iterator[Any],
        *,
        on_step: Callable[[Any], None] | None = None,
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ):
        self._steps = steps
        self._on_step = on_step
        self._on_done = on_done
        self._on_error = on_error
        self._stop = False
        # re-entrant: on_step may stop or wait for its own job (stop() advances the job on the loop)
        self._lock = threading.RLock()
        self._task: asyncio.Task | None = None
        self._thread: threading.Thread | None = None
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
        if loop is not None:
            self._task = loop.create_task(self._run_async())
        else:
            self._thread = threading.Thread(target=self._run_thread, name="nbvis-job", daemon=True)
            _THREAD_JOBS.add(self)
            self._thread.start()
        return self

    async def _run_async(self) -> None:
        while self._advance():
            await asyncio.sleep(0)

    def _run_thread(self) -> None:
        while self._advance():
            pass

    def _finish(self, state: str) -> None:
        self.state = state
        close = getattr(self._steps, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # a generator that fails while closing must not hide the real outcome
                pass

    def _advance(self) -> bool:
        """Run one step; False once the job has ended."""
        with self._lock:
            if self.state != "running":
                return False
            if self._stop:
                self._finish("stopped")
                return False
            try:
                item = next(self._steps)
                if self._on_step is not None:
                    self._on_step(item)
                return True
            except StopIteration as end:
                self.result = end.value
                self._finish("done")
                callback, argument = self._on_done, end.value
            except Exception as exc:
                self.exception = exc
                self._finish("error")
                callback, argument = self._on_error, exc
        if callback is not None:
            callback(argument)
        return False

    def stop(self) -> None:
        """Ask the job to end before its next step (a step that is running finishes first)."""
        self._stop = True
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        elif self._task is not None and self.state == "running" and running_loop() is not None:
            # On the loop's thread no step is running now: end at once.
            self._advance()

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the job ends; return its result, or raise the exception a step raised."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"the job did not finish within {timeout} s")
        else:
            deadline = None if timeout is None else time.monotonic() + timeout
            while self._advance():
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"the job did not finish within {timeout} s")
        if self.exception is not None:
            raise self.exception
        return self.result


class JobView(traitlets.HasTraits):
    """Mixin of the views whose work runs in the background as one :class:`Job` at a time.

    ``state`` is ``"idle"`` before the first run, ``"running"``, then ``"done"`` (only when the
    work finished), ``"stopped"`` (by :meth:`stop`, the view's stop button or an interrupt) or
    ``"error"`` (the reason is shown in the view's error area and raised by :meth:`wait`).

    A view provides :meth:`start` (it builds the steps and calls :meth:`_launch_job`),
    ``_job_step(item)`` for each step's item, and ``_publish()`` that sends the final state.
    """

    state = traitlets.Enum(STATES, default_value="idle", read_only=True).tag(sync=True)

    _job: Job | None = None

    # ----- the vocabulary --------------------------------------------------------------------

    def start(self):  # pragma: no cover - every view defines it
        raise NotImplementedError

    def stop(self):
        """Stop after the step in progress; what was computed so far stays."""
        self._halt_job()
        return self

    def wait(self, timeout: float | None = None):
        """Block until the work ends (in a notebook cell: run the remaining steps now).

        Raises the exception that ended the work, if one did.
        """
        if self._job is not None:
            try:
                self._job.wait(timeout)
            finally:
                self._resync()  # NbvisWidget: the final state, recorded by nbconvert --execute too
        return self._wait_result()

    def close(self):
        self._halt_job()
        super().close()

    # ----- for the views ---------------------------------------------------------------------

    def _wait_result(self):
        return self

    def _launch_job(self, steps: Iterator[Any]) -> Job:
        self._job = Job(steps, on_step=self._job_step, on_done=self._job_done, on_error=self._job_error)
        self.set_trait("state", "running")
        return self._job.start()

    def _halt_job(self) -> None:
        job = self._job
        if job is not None and job.running:
            job.stop()
            if job.state == "stopped":  # not when it ended (done or failed) before the stop took
                self._job_ended("stopped")

    def _job_step(self, item) -> None:  # pragma: no cover - every view defines it
        raise NotImplementedError

    def _publish(self) -> None:  # pragma: no cover - every view defines it
        raise NotImplementedError

    def _job_done(self, _result) -> None:
        self._job_ended("done")

    def _job_error(self, exc: BaseException) -> None:
        self._report(exc)
        self._job_ended("error")

    def _job_ended(self, state: str) -> None:
        self._publish()
        self.set_trait("state", state)

    # ----- commands from the view ----------------------------------------------------------------

    def _cmd_start(self) -> None:
        self.start()

    def _cmd_stop(self) -> None:
        self.stop()
