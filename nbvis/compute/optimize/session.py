"""The model borrowed for one step or many.

A step borrows the model (eval mode, parameters frozen; everything restored on exit, see
:func:`nbvis.compute.probe.borrowed`) and reads the activations of the objective's layers with
a :class:`~nbvis.compute.probe.Recorder`. A :class:`Session` borrows once and can then run any
number of forward passes: ``run.run(n)`` opens one for all ``n`` steps, ``run.advance(n,
seconds)`` one for the steps of about ``seconds`` (a streamed run: the caller's code runs between
such calls), ``run.step()`` one for its step, so that a long call pays the borrow and the hooks
once. The layer lookups and the feature axes are kept from one session to the next while the
model's modules stay the same (see :meth:`nbvis.compute.probe.Recorder.fits`).
"""

from __future__ import annotations

import torch
from torch import nn

from nbvis.compute import interrupts
from nbvis.compute.probe import borrowed
from nbvis.compute.recorder import Recorder
from nbvis.compute.units import resolve_output

__all__ = ["Session"]


class Session:
    """``with Session(model, layers) as forward: output, acts = forward(x)``.

    ``layers`` are names of ``model`` (``""`` is the model's output), or None for every leaf
    layer plus the output under ``""``. ``keep``: a dict of the caller's in which the session leaves
    its recorder for the next session of the same layers.
    """

    def __init__(self, model: nn.Module, layers, *, grad: bool = True, keep: dict | None = None):
        self.model = model
        self.layers = None if layers is None else list(layers)
        self.grad = grad
        self._borrow = None
        self._record: Recorder | None = None
        # the caller's dict where sessions leave their recorder for the next one: reused while the
        # model's modules are the same ones under the same names, it keeps the layers looked up and
        # the feature axes of the passes already made
        self._keep = keep

    def __enter__(self):
        interrupts.enter()  # until the model is borrowed and the hooks are on it
        self._open()
        interrupts.leave(deliver=False)  # the last call: a Ctrl-C after it is raised in the block
        return self.forward

    def _open(self) -> None:
        try:
            borrow = borrowed(self.model, grad=self.grad)
            borrow.__enter__()
            self._borrow = borrow
            recorder = None if self._keep is None else self._keep.get("recorder")
            if recorder is None or recorder.layers != self.layers or not recorder.fits(self.model, borrow.named):
                recorder = Recorder(self.model, self.layers, detach=False)
                if self._keep is not None:
                    self._keep["recorder"] = recorder
            self._record = recorder.__enter__()
        except BaseException:
            self._close()
            interrupts.leave()
            raise

    def __exit__(self, *exc):
        # no Python frame before the critical section (an ExitStack would be one: a Ctrl-C in it
        # would skip the restore); the first instructions defer a Ctrl-C
        interrupts.enter()
        try:
            self._close()
        finally:
            interrupts.leave()
        return False

    def _close(self) -> None:
        record, borrow, self._record, self._borrow = self._record, self._borrow, None, None
        try:
            if record is not None:
                record.__exit__(None, None, None)
        finally:
            if borrow is not None:
                borrow.__exit__(None, None, None)

    @property
    def parameters(self) -> list:
        """The model's parameters as the borrow listed them (inside the ``with`` block)."""
        return self._borrow.parameters

    def fingerprint(self):
        """The model as the session found it (see :class:`nbvis.compute.borrow.Fingerprint`)."""
        return self._borrow.fingerprint()

    def in_eval(self) -> None:
        """The model in eval mode again if a module left it since the session began."""
        self._borrow.in_eval()

    def forward(self, x: torch.Tensor):
        """``(output, activations)`` of one pass, in the autograd graph when ``grad``."""
        output, acts = self._record(x)
        final = resolve_output(output)
        if self.layers is None and final is not None:
            acts[""] = final
        return output, acts


interrupts.protect(Session.__enter__, tail=True)
interrupts.protect(Session.__exit__)
