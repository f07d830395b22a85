"""The selected unit's top dataset examples, scanned in the background: the part of a view
that finds them, streams them to the browser and answers the scan / cancel buttons."""

from __future__ import annotations

from typing import Optional

import traitlets

from ..compute.dataset import TopExamples, scan_top_examples
from ._jobs import Job, Throttle
from ._traits import ArrayDict

__all__ = ["TopExamplesView"]


class TopExamplesView(traitlets.HasTraits):
    """Mixed into a view that has ``model``, ``_dataset`` (or None), ``selected`` (``(layer,
    unit)`` or None), ``_lock`` (the view's one computation at a time) and the error guard.

    The view calls :meth:`_init_top` before its widget is set up, observes ``top_k`` with
    :meth:`_on_top_k`, starts a scan with :meth:`_start_top` when the selection changes and
    stops it with :meth:`_stop_top` when it closes.
    """

    top_k = traitlets.Int(9).tag(sync=True)
    _top = ArrayDict(dtypes={"indices": "int32"})
    top_state = traitlets.Unicode("idle", read_only=True).tag(sync=True)
    top_progress = traitlets.Float(0.0, read_only=True).tag(sync=True)

    def _init_top(self) -> None:
        self._top_job: Optional[Job] = None
        self._top_result: Optional[TopExamples] = None
        self._top_throttle = Throttle(0.1)

    @property
    def top(self) -> Optional[TopExamples]:
        """The selected unit's top dataset examples (the latest, possibly partial, scan)."""
        return self._top_result

    @property
    def top_job(self) -> Optional[Job]:
        """The running (or last) scan for top examples; ``top_job.wait()`` finishes it."""
        return self._top_job

    def scan_top(self) -> Optional[Job]:
        """(Re)start the scan of the dataset for the selected unit's top examples."""
        with self._guard():
            return self._start_top()

    @traitlets.validate("top_k")
    def _check_top_k(self, proposal):
        if not 1 <= proposal["value"] <= 100:
            raise traitlets.TraitError(f"top_k must be in 1..100, not {proposal['value']}")
        return proposal["value"]

    def _on_top_k(self, _change) -> None:
        with self._guard():
            self._start_top()

    def _start_top(self) -> Optional[Job]:
        self._stop_top()
        self._top_result = None  # another unit's examples must not stay on show
        if self._dataset is None or self.selected is None:
            self._top = None
            return None
        layer, unit = self.selected
        steps = self._locked(scan_top_examples(self.model, layer, unit, self._dataset, k=self.top_k, batch_size=256))
        self.set_trait("top_state", "running")
        self.set_trait("top_progress", 0.0)
        self._top_job = Job(steps, on_step=self._top_step, on_done=self._top_done, on_error=self._top_error)
        return self._top_job.start()

    def _stop_top(self) -> None:
        job = getattr(self, "_top_job", None)
        if job is not None and job.running:
            job.stop()
            self.set_trait("top_state", "stopped")

    def _locked(self, steps):
        try:
            while True:
                with self._lock:
                    try:
                        item = next(steps)
                    except StopIteration:
                        return
                yield item
        finally:
            steps.close()

    def _top_step(self, progress) -> None:
        self._top_result = progress.result
        if self._top_throttle.ready() or (progress.total and progress.done >= progress.total):
            with self.hold_sync():  # progress and examples in one message, at most 10 a second
                if progress.total:
                    self.set_trait("top_progress", progress.done / progress.total)
                self._send_top(progress.result)

    def _send_top(self, result: TopExamples) -> None:
        self._top = {
            "layer": result.layer,
            "unit": result.unit,
            "patches": result.patches,
            "values": result.values,
            "indices": result.indices,
            "scanned": result.scanned,
        }

    def _top_done(self, _result) -> None:
        if self._top_result is not None:
            self._send_top(self._top_result)
        self.set_trait("top_progress", 1.0)
        self.set_trait("top_state", "done")

    def _top_error(self, exc: BaseException) -> None:
        self.set_trait("top_state", "error")
        self._report(exc)

    def _cmd_scan_top(self) -> None:
        self._start_top()

    def _cmd_cancel_top(self) -> None:
        self._stop_top()
