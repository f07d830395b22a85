"""What every nbvis view shares: the base widget class and the background job runner."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Iterator

import anywidget
import traitlets

from .._arrays import base64_transport, message_bytes
from ._export import Exportable

STATIC = Path(__file__).resolve().parent.parent / "static"

__all__ = ["STATIC", "Job", "NbvisWidget", "Throttle", "array_trait"]


def array_trait():
    """A synced trait holding a packed array (see ``nbvis._arrays.pack``) or None."""
    return traitlets.Dict(default_value=None, allow_none=True).tag(sync=True)


class NbvisWidget(Exportable, anywidget.AnyWidget):
    """Base class of the views.

    - Unknown keyword arguments raise ``TypeError`` (traitlets would accept them silently).
    - ``error`` is shown under the view; :meth:`_guard` puts an exception there and re-raises it.
    - Commands from the browser (``model.send({type: "command", name, args})``) call
      ``self._cmd_<name>(**args)`` inside the guard.
    - ``to_html()``, ``await snapshot()`` and a picture in every output (see ``_export.py``); the
      views tell Python when they are shown (``{type: "view", attached}``) and answer snapshots.
    """

    error = traitlets.Unicode("").tag(sync=True)
    # True where binary buffers are dropped (Colab, NBVIS_BASE64=1): arrays, and what the view
    # sends back, travel as base64 text (see nbvis._arrays)
    _base64 = traitlets.Bool(False).tag(sync=True)

    def __init__(self, **kwargs):
        unknown = sorted(set(kwargs) - set(self.class_trait_names()))
        if unknown:
            raise TypeError(
                f"{type(self).__name__}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}"
            )
        esm = type(self)._esm
        if isinstance(esm, Path) and not esm.exists():
            raise RuntimeError(
                f"the browser view {esm.name} is not built: run `npm install && npm run build` in js/, "
                "or reinstall nbvis with `pip install .`"
            )
        self._attached = 0  # views of this widget shown in front ends now
        self._snapshots: dict = {}  # snapshot request id -> the future that gets the PNG
        super().__init__(**kwargs)
        self.set_trait("_base64", base64_transport())
        self.on_msg(self._on_custom_msg)

    def _report(self, exc: BaseException) -> None:
        self.error = f"{type(exc).__name__}: {exc}"

    @contextlib.contextmanager
    def _guard(self):
        """Show any exception of the block in the view (and re-raise it); clear the error on success."""
        try:
            yield
        except Exception as exc:
            self._report(exc)
            raise
        else:
            if self.error:
                self.error = ""

    def _on_custom_msg(self, _widget, content, buffers) -> None:
        if not isinstance(content, dict):
            return
        if content.get("type") == "view":
            self._attached = max(0, self._attached + (1 if content.get("attached") else -1))
            return
        if content.get("type") == "snapshot":
            self._snapshot_reply(content, buffers)
            return
        if content.get("type") != "command":
            return
        name = str(content.get("name", ""))
        handler = getattr(self, f"_cmd_{name}", None)
        if handler is None:
            self._report(ValueError(f"the view sent an unknown command {name!r}"))
            return
        try:
            with self._guard():
                handler(**(content.get("args") or {}))
        except Exception:
            pass  # already shown in the view; nobody in Python is waiting for a browser command


    def _resync(self) -> None:
        """Send the whole state again, from the cell that runs now.

        A background job's updates carry the cell that started it; tools that record a notebook's
        widget state cell by cell (``nbconvert --execute``, nbclient) keep only the messages of the
        cell they run, and would save the state as it was when the job began. ``wait()`` calls this.
        """
        if self.comm is not None:
            self.send_state()

    def _snapshot_reply(self, content: dict, buffers) -> None:
        future = self._snapshots.get(content.get("id"))
        if future is None or future.done():
            return  # answered already (by another view of this widget), or given up
        data = message_bytes(content, buffers)
        if data is None:
            outcome = RuntimeError(f"the front end could not draw the image: {content.get('error') or 'no data'}")
            future.get_loop().call_soon_threadsafe(lambda: future.done() or future.set_exception(outcome))
        else:
            future.get_loop().call_soon_threadsafe(lambda: future.done() or future.set_result(data))


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


def _running_loop() -> asyncio.AbstractEventLoop | None:
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
        loop = _running_loop()
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
        elif self._task is not None and self.state == "running" and _running_loop() is not None:
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
