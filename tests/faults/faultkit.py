"""Helpers of the fault campaign: models that show any change, interrupts at random moments."""

from __future__ import annotations

import contextlib
import random
import signal
import time

import torch
from torch import nn

from modelcheck import assert_unchanged, model_state  # tests/modelcheck.py

def bn_cnn() -> nn.Module:
    """A small conv net with BatchNorm (running stats that a forward in train mode would move),
    in train mode with one frozen parameter and one hook of its owner, to catch any change."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10)
    )
    model.train()
    model[0].bias.requires_grad_(False)
    model[4].register_forward_hook(lambda *_: None)
    return model


def bn_mlp() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 1))
    model.train()
    return model


def full_state(model: nn.Module) -> dict:
    """What nbvis must leave as it was, and the thread's grad mode."""
    state = model_state(model)
    state["grad_enabled"] = torch.is_grad_enabled()
    return state


def assert_same(model: nn.Module, before: dict) -> None:
    assert torch.is_grad_enabled() == before["grad_enabled"]
    assert_unchanged(model, before)


@contextlib.contextmanager
def alarm_interrupt(delay: float):
    """A ``KeyboardInterrupt`` raised once, ``delay`` seconds from now, wherever the main thread is
    (what a Ctrl-C does); disarmed on exit."""

    def handler(_signum, _frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, delay)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def interrupt_repeatedly(call, n: int, max_delay: float, check, seed: int = 0) -> int:
    """Call ``call()`` over and over until a KeyboardInterrupt lands at a random moment within
    ``max_delay`` seconds; then ``check()`` (not interruptible); ``n`` times. Returns how many
    interrupts reached the caller (every one must)."""
    rng = random.Random(seed)
    reached = 0
    for _ in range(n):
        deadline = time.monotonic() + 5  # an interrupt that never arrives ends the round, not a hang
        try:
            with alarm_interrupt(rng.uniform(1e-4, max_delay)):
                while time.monotonic() < deadline:
                    call()
        except KeyboardInterrupt:
            reached += 1
        check()
    return reached
