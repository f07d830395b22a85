"""Helpers of the fault campaign: models that show any change, interrupts at random moments."""

from __future__ import annotations

import contextlib
import random
import signal
import sys
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
    after = model_state(model)
    assert after["requires_grad"] == before["requires_grad"], "requires_grad changed"
    assert after["modes"] == before["modes"], "a module's mode changed"
    assert after["hooks"] == before["hooks"], "hooks changed"
    assert_unchanged(model, before)


@contextlib.contextmanager
def alarm_interrupt(delay: float):
    """A Ctrl-C, ``delay`` seconds from now, wherever the main thread is: a one-shot ``SIGALRM``
    whose handler sends ``SIGINT`` to the process, so the interrupt comes through the SIGINT
    handler that is set then (Python's, or the one nbvis sets while it restores a model), as a
    real Ctrl-C does; disarmed on exit."""

    def handler(_signum, _frame):
        signal.raise_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, delay)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class DroppedInterrupts:
    """Counts the interrupts Python drops: a ``KeyboardInterrupt`` raised inside a destructor or a
    weakref callback (of any object that dies then) is printed as "Exception ignored" and never
    reaches the caller. Python does it, not the code under test: such rounds are counted apart."""

    def __init__(self):
        self.count = 0

    def __enter__(self):
        self._previous = sys.unraisablehook

        def hook(unraisable):
            if isinstance(unraisable.exc_value, KeyboardInterrupt):
                self.count += 1
            else:
                self._previous(unraisable)

        sys.unraisablehook = hook
        return self

    def __exit__(self, *exc):
        sys.unraisablehook = self._previous
        return False


def interrupt_repeatedly(call, n: int, max_delay: float, check, seed: int = 0) -> tuple[int, int]:
    """Call ``call()`` over and over until a Ctrl-C lands at a random moment within ``max_delay``
    seconds; then ``check()`` (not interruptible); until ``n`` interrupts reached the caller.
    Returns ``(reached, dropped)``; every interrupt either reached the caller or was dropped by
    Python in a destructor (asserted: none is swallowed)."""
    rng = random.Random(seed)
    reached = rounds = 0
    with DroppedInterrupts() as dropped:
        while reached < n:
            rounds += 1
            assert rounds <= 3 * n, f"only {reached} of {rounds} interrupts reached the caller"
            before = dropped.count
            deadline = time.monotonic() + 5  # an interrupt that never arrives ends the round, not a hang
            try:
                with alarm_interrupt(rng.uniform(1e-4, max_delay)):
                    while time.monotonic() < deadline and dropped.count == before:
                        call()
            except KeyboardInterrupt:
                reached += 1
            else:
                assert dropped.count > before, "an interrupt was swallowed: it neither reached the caller nor was dropped"
            check()
    return reached, dropped.count


@contextlib.contextmanager
def interrupt_at_instruction(codes, n: int):
    """A Ctrl-C in frames of ``codes``, whichever of them it falls in. ``n`` >= 1: a
    ``KeyboardInterrupt`` raised at the ``n``-th instruction run in them: every moment of them can
    be hit, one run each (more than a real Ctrl-C can: Python takes one only at a call's end, a
    backward jump or a function's entry). Not counted: a ``NOP`` (where no interrupt is taken) and
    the entry itself (``RESUME``, where Python takes an interrupt that came before the call: the
    function has not begun). ``n`` = 0: a real Ctrl-C (``SIGINT``, through the handler set then)
    sent as one of them is entered the first time: Python handles it at that function's first
    instruction, the worst moment for an ``__exit__``. Yields a list that gets the name of the
    instruction it was raised at (``"entry"`` for ``n`` = 0)."""
    import dis

    names = {}
    raised = []
    count = [0]

    def local(frame, event, _arg):
        if event == "opcode" and not raised:
            code = frame.f_code
            if code not in names:
                names[code] = {ins.offset: ins.opname for ins in dis.get_instructions(code)}
            name = names[code].get(frame.f_lasti, "")
            if name not in ("RESUME", "NOP"):
                count[0] += 1
                if count[0] == n:
                    raised.append(name)
                    raise KeyboardInterrupt
        return local

    def call(frame, event, _arg):
        if event != "call" or frame.f_code not in codes or raised:
            return None
        if n == 0:
            raised.append("entry")
            signal.raise_signal(signal.SIGINT)
            return None
        frame.f_trace_opcodes = True
        return local

    previous = sys.gettrace()
    sys.settrace(call)
    try:
        yield raised
    finally:
        sys.settrace(previous)
