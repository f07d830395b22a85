"""The selected unit's top dataset examples, scanned in the background: the part of a view
that finds them, streams them to the browser and answers the scan / cancel buttons."""

from __future__ import annotations

from typing import Optional

import traitlets

from ..compute import units
from ..compute.dataset import TopExamples, scan_top_examples
from ..compute.example_maps import example_maps
from ..compute.probe import borrowed
from ._jobs import Job, Throttle
from ._traits import ArrayDict

__all__ = ["TopExamplesView"]


class TopExamplesView(traitlets.HasTraits):
    """Mixed into a view that has ``model``, ``_dataset`` (or None), ``selected`` (``(layer,
    unit)`` or None), ``_lock`` (the view's one computation at a time) and the error guard.

    The view calls :meth:`_init_top` before its widget is set up, observes ``top_k`` with
    :meth:`_on_top_k`, starts a scan with :meth:`_start_top` when the selection changes and
    stops it with :meth:`_stop_top` when it closes. :meth:`_top_target` says which ``(layer,
    unit)`` ranks the examples (the selected one unless the view says otherwise).

    When the scan is done, each example gets its guided-backprop and deconvnet maps (of the
    ranking unit, at the example's strongest position, cropped like its patch), as the Deep
    Visualization Toolbox shows beside the top 9; a model without a ReLU, for which those rules
    mean nothing, gets the plain gradient instead.
    """

    top_k = traitlets.Int(9).tag(sync=True)
    _top = ArrayDict(dtypes={"indices": "int32"})
    top_state = traitlets.Unicode("idle", read_only=True).tag(sync=True)
    top_progress = traitlets.Float(0.0, read_only=True).tag(sync=True)

    def _init_top(self) -> None:
        self._top_maps: dict = {}
        self._scan_cache: dict = {}  # the last scanned layer's activations over the dataset (see scan_top_examples)
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
        self._top = None
        if self._dataset is None or self.selected is None:
            return None
        layer, unit = self._top_target()
        self._top_maps: dict = {}
        scan = scan_top_examples(self.model, layer, unit, self._dataset, k=self.top_k, batch_size=256, cache=self._scan_cache)
        steps = self._locked(self._with_maps(scan))
        self.set_trait("top_state", "running")
        self.set_trait("top_progress", 0.0)
        self._top_job = Job(steps, on_step=self._top_step, on_done=self._top_done, on_error=self._top_error)
        return self._top_job.start()

    def _top_target(self):
        return self.selected

    def _stop_top(self) -> None:
        job = getattr(self, "_top_job", None)
        if job is not None and job.running:
            job.stop()
            self.set_trait("top_state", "stopped")

    def _with_maps(self, scan):
        """The scan's steps, then one more that finds the final examples' maps (a step of the
        job: stopping the job waits for it, and the model is not in use after that)."""
        last = None
        for progress in scan:
            last = progress
            yield progress
        if last is not None and last.result.inputs.is_floating_point():
            for attempt in range(2):
                try:
                    self._top_maps = self._example_maps(last.result)
                    break
                except RuntimeError:  # the owner updated the weights in place during a backward pass
                    self._top_maps = {}  # (training meanwhile): once more, then the examples go without maps
            yield None

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
        if progress is None:  # the maps' step: they are sent with the final examples
            return
        self._top_result = progress.result
        if self._top_throttle.ready() or (progress.total and progress.done >= progress.total):
            with self.hold_sync():  # progress and examples in one message, at most 10 a second
                if progress.total:
                    self.set_trait("top_progress", progress.done / progress.total)
                self._send_top(progress.result)

    def _send_top(self, result: TopExamples, maps: Optional[dict] = None) -> None:
        of = self.selected
        self._top = {
            "layer": result.layer,
            "ranked_by": units.unit_label(result.layer, result.unit),  # what the values are
            "of": "" if of is None else units.unit_label(of[0], of[1]),  # the selected unit
            "patches": result.patches,
            "values": result.values,
            "indices": result.indices,
            "scanned": result.scanned,
            **(maps or {}),
        }

    def _example_maps(self, result: TopExamples) -> dict:
        """{"guided": ..., "deconvnet": ...} cropped like the patches (or {"gradient": ...})."""
        try:
            with borrowed(self.model):  # one turn with the model for all of them
                return {method: example_maps(self.model, result, method) for method in ("guided", "deconvnet")}
        except ValueError:  # no ReLU ran: those rules change nothing, the gradient says it all
            return {"gradient": example_maps(self.model, result, "gradient")}

    def _top_done(self, _result) -> None:
        result = self._top_result
        if result is not None:
            self._send_top(result, self._top_maps)
        self.set_trait("top_progress", 1.0)
        self.set_trait("top_state", "done")

    def _top_error(self, exc: BaseException) -> None:
        self.set_trait("top_state", "error")
        self._report(exc)

    def _cmd_scan_top(self) -> None:
        self._start_top()

    def _cmd_cancel_top(self) -> None:
        self._stop_top()
