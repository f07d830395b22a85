"""Diversity between the starts (Olah et al. 2017, "Feature Visualization", section Diversity).

The penalty is the mean cosine similarity between every pair of starts' Gram matrices: at a layer
with channels and positions ``(N, C, *positions)`` the Gram matrix is ``C x C`` (which channels
fire together, wherever they fire), so starts that use different features score low even when
they are shifted copies. A layer without positions has no such matrix; there the penalty falls on
the inputs themselves: the squared correlation of each pair of (centred, flattened) inputs, which
is the cosine similarity of their Gram matrices ``x x^T``.
"""

from __future__ import annotations

import torch

__all__ = ["diversity_penalty", "gram_similarity", "pairwise_distance"]


def _grams(activation: torch.Tensor) -> torch.Tensor:
    """Normalized Gram matrices ``(N, C * C)`` of ``(N, C, *positions)`` activations."""
    flat = activation.reshape(activation.shape[0], activation.shape[1], -1)
    grams = flat @ flat.transpose(1, 2)
    grams = grams.reshape(grams.shape[0], -1)
    return grams / grams.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _centred(inputs: torch.Tensor) -> torch.Tensor:
    flat = inputs.reshape(inputs.shape[0], -1)
    flat = flat - flat.mean(dim=1, keepdim=True)
    return flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)


def gram_similarity(activation: torch.Tensor | None, inputs: torch.Tensor) -> torch.Tensor:
    """Mean pairwise cosine similarity of the starts' Gram matrices, a scalar in [0, 1] (0 with one start).

    ``activation`` is the objective's layer, used when it has channels and positions; otherwise
    the inputs are compared (squared correlation).
    """
    n = inputs.shape[0]
    if n < 2:
        return inputs.new_zeros(())
    if activation is not None and activation.dim() >= 3 and activation.shape[1] > 1:
        vectors = _grams(activation)
        similarity = vectors @ vectors.T
    else:
        vectors = _centred(inputs)
        similarity = (vectors @ vectors.T).square()
    off = similarity.sum() - similarity.diagonal().sum()
    return off / (n * (n - 1))


def diversity_penalty(weight: float, values: torch.Tensor, activation: torch.Tensor | None, inputs: torch.Tensor) -> torch.Tensor:
    """``weight x starts x`` the objective's mean size ``x`` the Gram similarity (see
    :func:`gram_similarity`): the weight is relative to the objective ``values`` ``(starts,)``, so
    one value suits units of any scale."""
    size = values.detach().abs().mean().clamp_min(1e-3)
    return weight * values.shape[0] * size * gram_similarity(activation, inputs)


@torch.no_grad()
def pairwise_distance(inputs: torch.Tensor) -> torch.Tensor:
    """``1 - correlation`` between every pair of starts, ``(N, N)`` (0 on the diagonal)."""
    vectors = _centred(inputs.double())
    return (1.0 - vectors @ vectors.T).clamp_(0.0, 2.0).fill_diagonal_(0.0)
