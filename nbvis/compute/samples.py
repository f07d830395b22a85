"""The sample rule of the contract (see :mod:`nbvis.compute.units`): whether ``x`` is one sample
or a batch, decided without trial forward passes, and how inputs become tensors.

An explicit ``input_shape`` wins; else the shape of a dataset sample; else the layer that
consumes the input (the first ``Linear``, ``ConvNd``, recurrent layer or ``Embedding`` of the model):
a ``ConvNd`` takes ``(C, *spatial)``; a ``Linear`` takes ``(..., in_features)``, or any shape with
``in_features`` values before a flatten; an ``RNN``, ``LSTM`` or ``GRU`` (``batch_first=True``)
takes ``(steps, input_size)``; an ``Embedding`` takes token ids ``(tokens,)``. For a
view, a leading axis of length 1 is a batch of one. Integer inputs of a model that starts with
an ``Embedding`` stay integers; every other input becomes the model's floating dtype.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

__all__ = [
    "consumer",
    "describe_consumer",
    "model_device",
    "model_dtype",
    "sample_shape_of",
    "split_sample",
    "to_tensor",
]


CONSUMERS = (nn.Linear, nn.modules.conv._ConvNd, nn.RNNBase, nn.Embedding, nn.EmbeddingBag)


def consumer(model: nn.Module, x: Optional[torch.Tensor] = None) -> Optional[tuple[str, nn.Module]]:
    """The layer that consumes the model's input: the first ``Linear``, ``ConvNd``, recurrent
    layer (``RNN``, ``LSTM``, ``GRU``) or ``Embedding`` in the model's definition order (None when
    it has none). A recurrent layer defined first reads what another layer makes of the input
    when the input ``x`` does not fit it: steps of another size go into the first Linear or
    recurrent layer of that size defined after it (an input projection), token ids into the
    model's first ``Embedding`` (also when ``x`` is not known)."""
    first = None
    later = []
    for name, module in model.named_modules():
        if not isinstance(module, CONSUMERS):
            continue
        if first is None and not isinstance(module, nn.RNNBase):
            return name, module
        if first is None:
            first = (name, module)
        else:
            later.append((name, module))
    if first is None:
        return None
    embedding = next((found for found in later if isinstance(found[1], (nn.Embedding, nn.EmbeddingBag))), None)
    if x is None or not x.is_floating_point():
        return embedding or first
    features = int(x.shape[-1]) if x.dim() else None
    if features == first[1].input_size:
        return first
    return next((found for found in later if _takes(found[1], features)), None) or embedding or first


def _takes(module: nn.Module, features: int) -> bool:
    """Whether a Linear or recurrent layer takes inputs of ``features`` values a step."""
    return getattr(module, "in_features", None) == features or getattr(module, "input_size", None) == features


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype of the model's first floating parameter (float32 when it has none)."""
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def to_tensor(x, model: nn.Module, name: str = "x") -> torch.Tensor:
    """A new tensor on the model's device from a numpy array, list or tensor: integer inputs of a
    model whose input is consumed by an ``Embedding`` stay integers (int64); everything else
    becomes the model's floating dtype. Always a copy (an in-place first layer cannot change the
    caller's data)."""
    device = model_device(model)
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise TypeError(f"{name} must be real-valued; got a {x.dtype} tensor")
        tensor = x.detach()
    else:
        try:
            array = np.asarray(x)
        except Exception as err:  # ragged lists and the like
            raise TypeError(f"{name} must be a tensor or an array of numbers, not {type(x).__name__}") from err
        if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise TypeError(f"{name} must hold numbers; got an array of dtype {array.dtype}")
        if np.iscomplexobj(array):
            raise TypeError(f"{name} must be real-valued; got an array of dtype {array.dtype}")
        tensor = torch.from_numpy(np.array(array))  # a copy, writable
    first = consumer(model, tensor)
    takes_ids = first is not None and isinstance(first[1], (nn.Embedding, nn.EmbeddingBag))
    if takes_ids:
        if tensor.is_floating_point() or tensor.dtype == torch.bool:
            if tensor.dtype == torch.bool or not torch.equal(tensor, tensor.round()):
                raise TypeError(
                    f"{name} goes into the embedding {first[0]!r}, which takes token ids (integers); got dtype {tensor.dtype}"
                )
        return tensor.to(device=device, dtype=torch.long, copy=True)
    return tensor.to(device=device, dtype=model_dtype(model), copy=True)


def sample_rank(model: nn.Module, x: Optional[torch.Tensor] = None) -> Optional[tuple[str, nn.Module, int]]:
    """(consumer name, module, rank of one sample) for ConvNd and recurrent layers (exact rank);
    Linear and Embedding get the least rank (1); None without a consumer."""
    found = consumer(model, x)
    if found is None:
        return None
    name, module = found
    if isinstance(module, nn.modules.conv._ConvNd):
        return name, module, len(module.kernel_size) + 1
    if isinstance(module, nn.RNNBase):
        return name, module, 2
    return name, module, 1


def describe_consumer(model: nn.Module, x: Optional[torch.Tensor] = None) -> str:
    """A short sentence on what the layer that consumes the input (``x``, when known) expects, for error messages."""
    found = consumer(model, x)
    if found is None:
        return "the model has no Linear, Conv, recurrent or Embedding layer to say what shape it expects"
    name, module = found
    if isinstance(module, nn.Linear):
        return f"its input goes into {name!r}, a Linear layer that expects {module.in_features} features"
    if isinstance(module, nn.modules.conv._ConvNd):
        axes = len(module.kernel_size)
        return f"its input goes into {name!r}, a {type(module).__name__} that expects {module.in_channels} channels ({axes + 1} axes a sample)"
    if isinstance(module, nn.RNNBase):
        return (f"its input goes into {name!r} ({type(module).__name__}), which expects {module.input_size} features "
                f"a step ((steps, {module.input_size}) a sample)")
    return f"its input goes into {name!r}, an {type(module).__name__} (token ids)"


def split_sample(
    model: nn.Module, x: torch.Tensor, *, input_shape: Optional[Sequence[int]] = None, one: bool = False
) -> tuple[torch.Tensor, bool]:
    """``(batch, single)``: ``x`` with a batch axis, and whether ``x`` was one sample.

    ``one=True`` (a view): ``x`` must be one sample or a batch of exactly one, else ValueError.
    The rule is in the module docstring; ``input_shape`` is the shape of one sample when known
    (from the caller or a dataset).
    """
    shape = tuple(x.shape)
    if input_shape is not None:
        sample = tuple(int(n) for n in input_shape)
        if shape == sample:
            return x.unsqueeze(0), True
        if shape[1:] == sample and (not one or shape[0] == 1):
            return x, False
        expected = f"{sample} (one sample) or {(1,) + sample} (a batch of one)" if one else f"{sample} or (N, *{sample})"
        raise ValueError(f"x has shape {shape}; expected {expected}")
    rank = sample_rank(model, x)
    if x.dim() == 0:
        if rank is not None and isinstance(rank[1], (nn.Embedding, nn.EmbeddingBag)):
            return x.reshape(1, 1), True
        raise ValueError(f"x is a scalar; {describe_consumer(model, x)}")
    if rank is None:
        if one and x.dim() >= 2 and shape[0] == 1:
            return x, False
        if one:
            return x.unsqueeze(0), True
        return x, False
    name, module, least = rank
    if isinstance(module, nn.modules.conv._ConvNd):
        if x.dim() == least:
            if shape[0] != module.in_channels:
                raise ValueError(
                    f"x has shape {shape}: one sample with {shape[0]} channels, but {describe_consumer(model, x)}"
                )
            return x.unsqueeze(0), True
        if x.dim() == least + 1 and (not one or shape[0] == 1):
            return x, False
        expected = f"{least} axes (C, *spatial) for one sample" + ("" if one else f" or {least + 1} for a batch")
        if one and x.dim() == least + 1:
            raise _a_batch(shape)
        raise ValueError(f"x has shape {shape}; {describe_consumer(model, x)}: expected {expected}")
    if isinstance(module, nn.RNNBase):
        return _sequence_sample(model, module, x, one)
    if x.dim() == 1 and not (isinstance(module, nn.Linear) and shape[0] != module.in_features and not one):
        return x.unsqueeze(0), True
    if isinstance(module, nn.Linear) and shape[-1] != module.in_features:
        size = module.in_features
        if x.numel() == size:  # one sample, reshaped before the Linear layer (a flatten)
            if x.dim() >= 4 and shape[0] == 1:
                return x, False  # a batch of one image
            return x.unsqueeze(0), True
        if shape[0] > 1 and x.numel() == shape[0] * size:
            if one:
                raise _a_batch(shape, f" ({describe_consumer(model, x)})")
            return x, False
        if one:
            raise ValueError(f"x has shape {shape} ({x.numel()} values); {describe_consumer(model, x)}")
    if one:
        return (x, False) if shape[0] == 1 else (x.unsqueeze(0), True)  # a leading axis > 1: a sequence
    return x, False


def _sequence_sample(model: nn.Module, module: nn.RNNBase, x: torch.Tensor, one: bool) -> tuple[torch.Tensor, bool]:
    """:func:`split_sample` for a model whose input goes into a recurrent layer: ``(steps,
    input_size)`` is one sample, ``(N, steps, input_size)`` a batch (the batch first, as everywhere)."""
    shape = tuple(x.shape)
    about = describe_consumer(model, x)
    if not module.batch_first:
        if not one:  # a compute function takes the batch as the model does
            return x, False
        raise ValueError(
            f"{about}, with batch_first=False: it reads the batch on the second axis, and a view passes "
            "one sample as a batch on the first; build it with batch_first=True (the same weights) and read "
            "its output batch first (out[:, -1] for out[-1])"
        )
    if x.dim() not in (2, 3) or shape[-1] != module.input_size:
        expected = f"(steps, {module.input_size}) for one sample" + ("" if one else f" or (N, steps, {module.input_size}) for a batch")
        raise ValueError(f"x has shape {shape}; {about}: expected {expected}")
    if x.dim() == 2:
        return x.unsqueeze(0), True
    if one and shape[0] != 1:
        raise _a_batch(shape)
    return x, False


def _a_batch(shape: tuple, about: str = "") -> ValueError:
    """The error of a view given a batch of several samples."""
    return ValueError(
        f"x has shape {shape}: a batch of {shape[0]} inputs{about}; pass one sample (x[0]) or a batch of one, "
        "or dataset=x to pick from them"
    )


def sample_shape_of(model: nn.Module, x, *, input_shape: Optional[Sequence[int]] = None) -> tuple:
    """The shape of one sample for the view rule (``one=True``) of :func:`split_sample`."""
    batch, _ = split_sample(model, x, input_shape=input_shape, one=True)
    return tuple(batch.shape[1:])
