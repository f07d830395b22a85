"""Bundled demo data and models: nothing is downloaded.

The data are scikit-learn's 8x8 handwritten digits (shipped inside scikit-learn), upsampled to
28x28 as in MNIST. The models are small, trained here at first use with a fixed seed, and cached
in ``$NBVIS_CACHE`` (default ``~/.cache/nbvis``), so later calls load in milliseconds.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

__all__ = ["cache_dir", "digits", "digits_cnn", "digits_mlp", "photo_cnn", "photo_patches", "tiny_net", "DIGIT_LABELS", "PHOTO_LABELS"]

DIGIT_LABELS = [str(i) for i in range(10)]
PHOTO_LABELS = ["china", "flower"]


def cache_dir() -> Path:
    """Where trained demo models are kept (``$NBVIS_CACHE`` or ``~/.cache/nbvis``)."""
    root = os.environ.get("NBVIS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "nbvis"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def digits(size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1797 digits as ``(images, labels)``.

    ``images`` is float32 of shape (1797, 1, size, size) scaled to [0, 1] (bilinear upsampling
    from 8x8 when ``size`` is not 8); ``labels`` is int64 of shape (1797,).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - scikit-learn is installed with the demo extra
        raise ImportError("the demo data need scikit-learn: pip install 'nbvis[demo]'") from err
    data = load_digits()
    images = torch.from_numpy(data.images.astype(np.float32) / 16.0).unsqueeze(1)
    if size != 8:
        images = nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        images = images.clamp_(0.0, 1.0)
    return images.contiguous(), torch.from_numpy(data.target.astype(np.int64))


def _mlp(hidden: int = 100, classes: int = 10, inputs: int = 784) -> nn.Module:
    return nn.Sequential(
        OrderedDict(
            flatten=nn.Flatten(),
            fc1=nn.Linear(inputs, hidden),
            sigmoid=nn.Sigmoid(),
            fc2=nn.Linear(hidden, classes),
        )
    )


def _cnn() -> nn.Module:
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 8, 5, padding=2),
            relu1=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(8, 16, 3, padding=1),
            relu2=nn.ReLU(),
            pool2=nn.MaxPool2d(2),
            flatten=nn.Flatten(),
            fc=nn.Linear(16 * 7 * 7, 10),
        )
    )


def _train(
    name: str,
    build: Callable[[], nn.Module],
    data: tuple[torch.Tensor, torch.Tensor],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
) -> nn.Module:
    """Train ``build()`` on ``data`` with a fixed seed, or load it from the cache."""
    images, labels = data
    with torch.random.fork_rng(devices=[]):  # the cache key needs the model; the caller's RNG must not move
        model = build()
    key = hashlib.sha256(f"{name}|{model}|{epochs}|{batch_size}|{lr}|{torch.__version__}".encode()).hexdigest()[:12]
    path = cache_dir() / f"{name}-{key}.pt"
    if path.exists():
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return model.eval()
        except Exception:
            path.unlink(missing_ok=True)  # a damaged cache file: train again
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build()
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        loss_fn = nn.CrossEntropyLoss()
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(images), generator=generator)
            for start in range(0, len(images), batch_size):
                idx = order[start : start + batch_size]
                optimizer.zero_grad()
                loss_fn(model(images[idx]), labels[idx]).backward()
                optimizer.step()
    # a freshly trained model is the same as one loaded from the cache: no .grad left behind
    optimizer.zero_grad(set_to_none=True)
    model.eval()
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)
    return model


def digits_mlp() -> nn.Module:
    """The 784->100->10 sigmoid MLP of the classic MNIST question, trained on the 28x28 digits.

    Layers: ``flatten``, ``fc1`` (Linear 784->100), ``sigmoid``, ``fc2`` (Linear 100->10, logits).
    Input: (N, 1, 28, 28) or (N, 784) in [0, 1].
    """
    return _train("digits_mlp", _mlp, digits(28), epochs=60, batch_size=64, lr=1e-3)


def tiny_net() -> nn.Module:
    """The 784->1->2 network that tells 0s from 1s (layers ``flatten``, ``fc1``, ``sigmoid``, ``fc2``)."""
    images, labels = digits(28)
    keep = labels < 2
    return _train(
        "tiny_net",
        lambda: _mlp(hidden=1, classes=2),
        (images[keep], labels[keep]),
        epochs=40,
        batch_size=32,
        lr=1e-2,
    )


def digits_cnn() -> nn.Module:
    """A small ReLU CNN on the 28x28 digits.

    Layers: ``conv1`` (1->8, 5x5), ``relu1``, ``pool1``, ``conv2`` (8->16, 3x3), ``relu2``, ``pool2``,
    ``flatten``, ``fc`` (784->10 logits). Input: (N, 1, 28, 28) in [0, 1].
    """
    return _train("digits_cnn", _cnn, digits(28), epochs=8, batch_size=64, lr=2e-3)


def photos() -> torch.Tensor:
    """scikit-learn's two sample photographs (a temple in China, a flower) as float32 (2, 3, 427, 640) in [0, 1]."""
    try:
        from sklearn.datasets import load_sample_images
    except ImportError as err:  # pragma: no cover - scikit-learn is a dependency
        raise ImportError("the photo demo needs scikit-learn: pip install scikit-learn") from err
    images = np.stack(load_sample_images().images).astype(np.float32) / 255.0
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def photo_patches(size: int = 32, per_image: int = 600) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``size`` x ``size`` RGB patches of the two sample photographs (at half resolution), as
    ``(patches (2 * per_image, 3, size, size) in [0, 1], labels)``: 0 for the temple, 1 for the flower
    (see :data:`PHOTO_LABELS`). The same patches every call (a fixed seed)."""
    half = nn.functional.avg_pool2d(photos(), 2)
    generator = torch.Generator().manual_seed(0)
    patches, labels = [], []
    for label, image in enumerate(half):
        height, width = image.shape[1:]
        ys = torch.randint(0, height - size + 1, (per_image,), generator=generator)
        xs = torch.randint(0, width - size + 1, (per_image,), generator=generator)
        patches += [image[:, y : y + size, x : x + size] for y, x in zip(ys.tolist(), xs.tolist())]
        labels += [label] * per_image
    return torch.stack(patches).contiguous(), torch.tensor(labels, dtype=torch.int64)


def _photo_cnn() -> nn.Module:
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 16, 3, padding=1),
            relu1=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(16, 16, 3, padding=1),
            relu2=nn.ReLU(),
            pool2=nn.MaxPool2d(2),
            conv3=nn.Conv2d(16, 32, 3, padding=1),
            relu3=nn.ReLU(),
            gap=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(32, 2),
        )
    )


def photo_cnn() -> nn.Module:
    """A small ReLU CNN on RGB patches of scikit-learn's sample photographs: temple or flower.

    Layers: ``conv1`` (3->16), ``relu1``, ``pool1``, ``conv2`` (16->16), ``relu2``, ``pool2``,
    ``conv3`` (16->32), ``relu3``, ``gap`` (global average pooling), ``flatten``, ``fc`` (2 logits,
    :data:`PHOTO_LABELS`). Input: (N, 3, H, W) in [0, 1], any H, W >= 4 (trained on 32 x 32 patches
    from :func:`photo_patches`).
    """
    return _train("photo_cnn", _photo_cnn, photo_patches(), epochs=4, batch_size=64, lr=2e-3)
