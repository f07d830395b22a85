"""Neuron groups: one input's activations at a conv layer factorized by non-negative matrix factorization.

The activation ``A`` of shape ``(C, H, W)`` is read as ``H * W`` positions of ``C`` channels and
factorized by scikit-learn's :class:`~sklearn.decomposition.NMF` into ``k`` groups:
``A[(y, x), :] ~= sum_i spatial[i, y, x] * channels[i, :]`` (Olah et al. 2018, "The Building Blocks of
Interpretability"; Lucid's ``ChannelReducer``). ``init`` and ``random_state`` are pinned, so the
same input gives the same groups whatever scikit-learn's defaults are.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from ..probe import LayerRef, borrowed, first_tensor, forward_with
from .layer import layer_activation, nearest_non_negative, spatial_layers

__all__ = ["Groups", "NEGATIVE", "neuron_groups"]

NEGATIVE = ("refuse", "clip")


@dataclasses.dataclass
class Groups:
    """The result of :func:`neuron_groups`.

    ``spatial`` ``(k, H, W)``: where each group is active; ``channels`` ``(k, C)``: which channels
    form it (both non-negative; groups ordered left to right by the column of their spatial peak).
    ``order``: for each group, its index among scikit-learn's components (``spatial[i]`` is
    column ``order[i]`` of ``fit_transform``, ``channels[i]`` is row ``order[i]`` of ``components_``).
    ``r2``: ``1 - |A - WH|^2 / |A|^2``, the share of the (clipped) activation the groups reconstruct.
    ``classes`` / ``logits``: the classes attributed to (the top ones by logit) and their
    pre-softmax logits; ``attribution`` ``(k, len(classes))``: ``sum(group_vector * d logit / d
    activation)`` per group and class (a linear approximation; None when the model output is not
    one vector of logits). ``clipped``: how many negative values were clipped to zero.
    """

    layer: str
    spatial: np.ndarray
    channels: np.ndarray
    order: np.ndarray
    r2: float
    activation: np.ndarray
    classes: Optional[np.ndarray]
    logits: Optional[np.ndarray]
    attribution: Optional[np.ndarray]
    clipped: int = 0
    random_state: int = 0
    init: str = "nndsvda"

    @property
    def k(self) -> int:
        return int(self.spatial.shape[0])

    @property
    def peaks(self) -> np.ndarray:
        """``(k, 2)``: the (row, column) of each group's spatial maximum."""
        flat = self.spatial.reshape(self.k, -1).argmax(axis=1)
        return np.stack(np.unravel_index(flat, self.spatial.shape[1:]), axis=1)

    def vectors(self) -> np.ndarray:
        """Each group's share of the activation, ``(k, C, H, W)`` = ``spatial[i] * channels[i]``."""
        return self.spatial[:, None, :, :] * self.channels[:, :, None, None]

    def reconstruction(self) -> np.ndarray:
        """``W H`` as an activation ``(C, H, W)``."""
        return self.vectors().sum(axis=0)

    def normalized_maps(self, percentile: float = 99.0) -> np.ndarray:
        """The spatial maps divided by the ``percentile`` of all of them, clipped to [0, 1]."""
        scale = float(np.percentile(self.spatial, percentile)) if self.spatial.size else 0.0
        if not scale > 0:
            scale = float(self.spatial.max()) if self.spatial.size and self.spatial.max() > 0 else 1.0
        return np.clip(self.spatial / scale, 0.0, 1.0).astype(np.float32)


def _check_k(k, channels: int, positions: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k (the number of groups) must be a positive integer, not {k!r}")
    limit = min(channels, positions)
    if k > limit:
        raise ValueError(f"k={k} groups is more than this layer allows: {channels} channels at {positions} positions (k <= {limit})")
    return int(k)


def _non_negative(model, batch, name: str, act: torch.Tensor, negative: str) -> tuple[torch.Tensor, int]:
    below = int((act < 0).sum())
    if below == 0:
        return act, 0
    share = 100.0 * below / act.numel()
    if negative == "clip":
        warnings.warn(
            f"layer {name!r} has {below} negative activations ({share:.1f}%, min {float(act.min()):.4g}); "
            "they are clipped to zero before the factorization",
            stacklevel=3,
        )
        return act.clamp(min=0), below
    nearby = nearest_non_negative(spatial_layers(model, batch), name)
    hint = f"use the non-negative layer {nearby!r} next to it" if nearby else "no spatial layer of this model is non-negative for this input"
    raise ValueError(
        f"layer {name!r} has negative activations ({below} values, {share:.1f}%, min {float(act.min()):.4g}) "
        f"and NMF needs non-negative ones: {hint}, or pass negative='clip' to clip them at zero"
    )


def _factorize(matrix: np.ndarray, k: int, random_state: int, init: str, max_iter: int):
    from sklearn.decomposition import NMF

    model = NMF(n_components=k, init=init, random_state=random_state, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Maximum number of iterations")
        spatial = model.fit_transform(matrix)
    return spatial, model.components_


def _classes(logits: torch.Tensor, classes) -> np.ndarray:
    n = logits.shape[0]
    if isinstance(classes, (int, np.integer)) and not isinstance(classes, bool):
        if classes < 1:
            raise ValueError(f"classes is a positive number of top classes or a list of class indices, not {classes!r}")
        return torch.argsort(logits, descending=True, stable=True)[: min(int(classes), n)].cpu().numpy()
    chosen = np.asarray(list(classes), dtype=np.int64)
    bad = [int(c) for c in chosen if not 0 <= c < n]
    if bad:
        raise ValueError(f"classes {bad} are out of range: the model has {n} outputs (0..{n - 1})")
    return chosen


def _attribution(model, batch, name: str, vectors: np.ndarray, classes):
    """(classes, logits, attribution (k, n)) or (None, None, None) when the output is not one logit vector.

    One forward pass with the layer's output replaced by a leaf, then one backward pass per class
    through the layers after it only."""
    with borrowed(model), torch.enable_grad():
        output, acts = forward_with(model, batch.clone(), [], detach=False, leaf=name)
        out = first_tensor(output)
        leaf = getattr(acts, "leaf", None)
        if out is None or out.dim() != 2 or out.shape[0] != 1 or leaf is None:
            return None, None, None
        logits = out[0]
        chosen = _classes(logits.detach().float(), classes)
        vec = torch.as_tensor(vectors, dtype=torch.float32).reshape(vectors.shape[0], -1)
        rows = []
        for c in chosen:
            if not logits[int(c)].requires_grad:  # the logit does not depend on this layer
                rows.append(torch.zeros(len(vec)))
                continue
            (grad,) = torch.autograd.grad(logits[int(c)], leaf, retain_graph=True, allow_unused=True)
            rows.append(torch.zeros(len(vec)) if grad is None else vec @ grad[0].detach().float().cpu().reshape(-1))
    attribution = torch.stack(rows, dim=1).numpy() if rows else np.zeros((len(vectors), 0), np.float32)
    return chosen, logits.detach()[torch.as_tensor(chosen, dtype=torch.long)].float().cpu().numpy(), attribution


def neuron_groups(
    model: nn.Module,
    x,
    layer: LayerRef,
    k: int = 6,
    *,
    random_state: int = 0,
    init: str = "nndsvda",
    max_iter: int = 500,
    negative: str = "refuse",
    classes: Union[int, Sequence[int]] = 10,
) -> Groups:
    """Factorize one input's activations at a conv ``layer`` into ``k`` neuron groups.

    ``x``: one image input ``(C, H, W)`` or a batch of one. ``layer``: a dotted name or module whose
    output is ``(1, C, H, W)``. ``random_state``, ``init``, ``max_iter``: passed to scikit-learn's
    ``NMF``. ``negative``: what to do with a layer that has negative values (pre-ReLU, BatchNorm,
    GELU): ``"refuse"`` (a ValueError naming a non-negative layer nearby) or ``"clip"`` (clip them at
    zero, with a warning). ``classes``: the number of top classes (by logit) to attribute each group
    to, or a list of class indices.

    The model is borrowed and left exactly as it was.
    """
    if negative not in NEGATIVE:
        raise ValueError(f"negative must be one of {NEGATIVE}, not {negative!r}")
    name, act, batch = layer_activation(model, x, layer)
    channels, height, width = act.shape
    k = _check_k(k, channels, height * width)
    act, clipped = _non_negative(model, batch, name, act, negative)
    matrix = act.detach().double().cpu().numpy().reshape(channels, height * width).T  # (H*W, C)
    spatial, components = _factorize(matrix, k, random_state, init, max_iter)
    peaks = spatial.argmax(axis=0)
    order = np.array(sorted(range(k), key=lambda i: (peaks[i] % width, peaks[i] // width, i)), dtype=np.int64)
    spatial = spatial[:, order].T.reshape(k, height, width)
    components = components[order]
    denominator = float((matrix**2).sum())
    residual = float(((matrix - spatial.reshape(k, -1).T @ components) ** 2).sum())
    r2 = 1.0 - residual / denominator if denominator > 0 else 0.0
    spatial32, channels32 = spatial.astype(np.float32), components.astype(np.float32)
    result = Groups(
        layer=name, spatial=spatial32, channels=channels32, order=order, r2=r2,
        activation=act.detach().float().cpu().numpy(), classes=None, logits=None, attribution=None,
        clipped=clipped, random_state=int(random_state), init=init,
    )
    result.classes, result.logits, result.attribution = _attribution(model, batch, name, result.vectors(), classes)
    return result
