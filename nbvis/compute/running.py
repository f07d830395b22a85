"""Run a model that others may be using: a failure on an input becomes an error that names the
input's shape, a Ctrl-C recorded while the model was being borrowed is raised first, and a hook
acts on the passes of the thread that made it only."""

from __future__ import annotations

import threading

import torch
from torch import nn

from . import interrupts, units

__all__ = ["model_output", "run_model", "this_thread_only"]


def run_model(model: nn.Module, x: torch.Tensor):
    """Call the model; a failure of the model on this input becomes a ValueError that names the shape."""
    interrupts.checkpoint()  # a Ctrl-C recorded while the model was being borrowed
    try:
        return model(x)
    except torch.OutOfMemoryError:
        raise  # not a problem with the input's shape
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"the model could not run on an input of shape {tuple(x.shape)} ({units.describe_consumer(model, x)}): {first}"
        ) from None


def model_output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """:func:`run_model`, its result read as one tensor by the contract's rule (a ``ModelOutput``'s
    logits, a tuple's first tensor: :func:`nbvis.compute.units.output_tensor`)."""
    return units.output_tensor(run_model(model, x))


def this_thread_only(hook):
    """``hook`` for the passes of the thread that made it: the owner's forward in another thread,
    while a background job's step has hooks on the model, is neither recorded nor changed."""
    ident = threading.get_ident()

    def guarded(*args):
        return hook(*args) if threading.get_ident() == ident else None

    return guarded
