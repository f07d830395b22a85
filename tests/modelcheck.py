"""What nbvis promises to leave unchanged in a model, and the check of it (shared by the fixtures
in conftest.py and the fault campaign in tests/faults)."""

from __future__ import annotations

import torch


def model_state(model: torch.nn.Module) -> dict:
    """Everything nbvis promises to leave unchanged: parameters and buffers, requires_grad,
    .grad, every module's mode, and every module's hooks; read between the steps of any job that
    still runs on the model in the background (as its owner would: inside ``nbvis.exclusive``)."""
    import nbvis

    with nbvis.exclusive(model):
        return _state(model)


def _state(model: torch.nn.Module) -> dict:
    hook_dicts = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return {
        "tensors": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "modes": [m.training for m in model.modules()],
        "hooks": [{d: list(getattr(m, d, {}).keys()) for d in hook_dicts} for m in model.modules()],
    }


def assert_unchanged(model: torch.nn.Module, before: dict) -> None:
    after = model_state(model)
    assert after["requires_grad"] == before["requires_grad"]
    assert after["modes"] == before["modes"]
    assert after["hooks"] == before["hooks"]
    assert before["tensors"].keys() == after["tensors"].keys()
    for key, value in before["tensors"].items():
        assert torch.equal(value, after["tensors"][key]), key
    for g0, g1 in zip(before["grads"], after["grads"]):
        assert (g0 is None and g1 is None) or torch.equal(g0, g1)
