"""Layer lookup, activation capture and borrowing a model."""

from __future__ import annotations

import copy
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

import nbvis
from nbvis.compute import walk
from nbvis.compute.probe import borrowed, forward_with, layer_names, leaf_layers, resolve_layer
from nbvis.compute.recorder import Recorder


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.conv(x))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(OrderedDict(block=Block(), pool=nn.AdaptiveAvgPool2d(2)))
        self.drop = nn.Dropout(0.5)
        self.bn = nn.BatchNorm1d(16)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        return self.head(self.bn(self.drop(self.features(x).flatten(1))))


@pytest.fixture
def net():
    torch.manual_seed(0)
    return Net().train()


def test_names_and_resolution(net):
    assert layer_names(net)[:3] == ["features", "features.block", "features.block.conv"]
    assert leaf_layers(net) == ["features.block.conv", "features.block.act", "features.pool", "drop", "bn", "head"]
    assert resolve_layer(net, "features.block.conv") == ("features.block.conv", net.features.block.conv)
    assert resolve_layer(net, net.head) == ("head", net.head)
    with pytest.raises(ValueError, match=r"unknown layer 'features\.conv'.*'features\.block\.conv'"):
        resolve_layer(net, "features.conv")
    with pytest.raises(ValueError, match="not part of this model"):
        resolve_layer(net, nn.Linear(2, 2))
    with pytest.raises(TypeError, match="dotted name"):
        resolve_layer(net, 3)


def test_capture_equals_manual_forward(net, unchanged):
    x = torch.randn(6, 3, 8, 8)
    with unchanged(net):
        acts = nbvis.capture(net, x)
    net.eval()
    with torch.no_grad():
        conv = net.features.block.conv(x)
        act = torch.relu(conv)
        pool = net.features.pool(act)
        head = net.head(net.bn(pool.flatten(1)))
    net.train()
    assert list(acts) == leaf_layers(net)  # execution order
    torch.testing.assert_close(acts["features.block.conv"], conv)
    torch.testing.assert_close(acts["features.pool"], pool)
    torch.testing.assert_close(acts["head"], head)
    # Eval mode during capture: dropout is the identity and batch norm uses running stats.
    torch.testing.assert_close(acts["drop"], pool.flatten(1))


def test_capture_numpy_input_and_order_of_requested_layers(net):
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8))  # float64 numpy
    acts = nbvis.capture(net, x, ["head", "features.block"])
    assert list(acts) == ["head", "features.block"]
    assert acts["head"].dtype == torch.float32 and acts["features.block"].shape == (2, 4, 8, 8)


def test_capture_layer_inputs(net):
    x = torch.randn(2, 3, 8, 8)
    outs = nbvis.capture(net, x, ["bn"])
    ins = nbvis.capture(net, x, ["head"], inputs=True)
    torch.testing.assert_close(ins["head"], outs["bn"])


def test_hooks_removed_and_state_restored_when_forward_raises(net, unchanged):
    with unchanged(net):
        with pytest.raises(ValueError, match=r"shape \(2, 5, 8, 8\).*expects 3 channels"):
            nbvis.capture(net, torch.randn(2, 5, 8, 8))
    with unchanged(net):
        with pytest.raises(RuntimeError, match="boom"):
            with borrowed(net):
                net.head.register_forward_hook(lambda *a: None)  # a hook someone leaked
                net.head.weight.requires_grad_(True)
                raise RuntimeError("boom")


def test_borrowed_keeps_hooks_the_user_had(net):
    calls = []
    handle = net.head.register_forward_hook(lambda m, i, o: calls.append(o.shape))
    nbvis.capture(net, torch.randn(2, 3, 8, 8), ["head"])
    assert calls == [torch.Size([2, 5])]
    assert len(net.head._forward_hooks) == 1
    handle.remove()


def test_a_borrow_runs_every_module_in_eval_mode_and_gives_back_mixed_modes(net, unchanged):
    """A model that trains with a frozen BatchNorm (one module left in eval mode): inside the
    borrow every module is in eval mode (the outputs of ``model.eval()``), after it each module
    is back in its own mode; a ``training`` property of a module's class is set through its setter."""
    class Watched(nn.Identity):
        modes = []

        @property
        def training(self):
            return self.__dict__.get("_mode", True)

        @training.setter
        def training(self, mode):
            self.modes.append(mode)
            self.__dict__["_mode"] = mode

    net.features.add_module("watched", Watched())
    net.bn.eval()
    x = torch.randn(4, 3, 8, 8)
    twin = copy.deepcopy(net).eval()
    Watched.modes.clear()
    with unchanged(net):
        with borrowed(net):
            assert not any(m.training for m in net.modules())
            inside = net(x)
    assert net.training and not net.bn.training and net.features.watched.training
    assert Watched.modes == [False, True]
    torch.testing.assert_close(inside, twin(x), rtol=0, atol=0)


def test_a_borrow_of_a_torchscript_model_sets_its_mode_where_torchscript_keeps_it():
    """A scripted module keeps ``training`` in its C++ object: the borrow switches that one (its
    Dropout is off inside) and leaves no Python attribute behind that would hide it."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script: deprecated, still used
        scripted = torch.jit.script(nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.Linear(8, 2)).train())
    x = torch.randn(16, 8)
    with borrowed(scripted):
        assert not scripted.training
        inside = [scripted(x) for _ in range(2)]
    torch.testing.assert_close(inside[0], inside[1], rtol=0, atol=0)  # no Dropout: eval mode
    assert scripted.training and scripted._c.getattr("training")
    assert all("training" not in m.__dict__ for m in scripted.modules())
    assert not torch.equal(scripted(x), scripted(x))  # Dropout again: train mode


def test_walk_and_borrow_on_shared_tied_and_empty_modules(unchanged):
    """Modules reachable under two names, a None child, tied weights and hooks of several kinds:
    the walk lists what torch lists, and the borrow takes off exactly the hooks added inside it."""
    shared = nn.Linear(3, 3)
    model = nn.Sequential(OrderedDict(a=shared, act=nn.ReLU(), inner=nn.Sequential(shared, nn.Sequential()), b=nn.Linear(3, 3)))
    model.register_module("gone", None)
    model.b.weight = shared.weight
    assert [(n, m) for n, m in walk.named_modules(model)] == list(model.named_modules())
    assert [id(p) for p in walk.parameters(model)] == [id(p) for p in model.parameters()]
    kept = [model.act.register_forward_hook(lambda *a: None), model.b.register_forward_pre_hook(lambda *a: None)]
    with unchanged(model):
        with borrowed(model):
            model.act.register_forward_hook(lambda *a: None)
            model.act.register_full_backward_hook(lambda *a: None)
            model.b.register_forward_pre_hook(lambda *a: None)
            shared.register_forward_hook(lambda *a: None)
    assert list(model.act._forward_hooks) == [kept[0].id] and not model.act._backward_hooks
    assert list(model.b._forward_pre_hooks) == [kept[1].id] and not shared._forward_hooks
    for handle in kept:
        handle.remove()


def test_layers_that_do_not_run_or_return_non_tensors():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.used = nn.Linear(2, 2)
            self.unused = nn.Linear(2, 2)

        def forward(self, x):
            return self.used(x)

    with pytest.raises(ValueError, match="'unused' did not run"):
        nbvis.capture(Odd(), torch.randn(1, 2), ["unused"])
    lstm = nn.Sequential(OrderedDict(rnn=nn.LSTM(3, 4, batch_first=True)))
    acts = nbvis.capture(lstm, torch.randn(1, 5, 3), ["rnn"])  # (output, (h, c)): the output tensor
    assert acts["rnn"].shape == (1, 5, 4)


def test_forward_with_keeps_graph(net):
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    with borrowed(net):
        out, acts = forward_with(net, x, ["features.pool"], detach=False)
        (grad,) = torch.autograd.grad(out[:, 0].sum(), acts["features.pool"])
    assert grad.shape == (2, 4, 2, 2) and grad.abs().sum() > 0


def test_bad_inputs_are_named():
    model = nn.Linear(3, 2)
    with pytest.raises(TypeError, match="numbers"):
        nbvis.capture(model, np.array(["a", "b", "c"]))
    with pytest.raises(TypeError, match="real-valued"):
        nbvis.capture(model, torch.zeros(1, 3, dtype=torch.complex64))


def test_capture_input_of_the_model_itself(net):
    x = torch.randn(2, 3, 4, 4)
    seen = nbvis.capture(net, x, [""], inputs=True)[""]
    assert torch.equal(seen, x)


def test_capture_never_changes_the_callers_input():
    model = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(3, 2))
    x = torch.tensor([[-1.0, 2.0, -3.0]])
    a = x.numpy().copy()
    nbvis.capture(model, x)
    nbvis.capture(model, a)
    assert x.tolist() == [[-1.0, 2.0, -3.0]] and a.tolist() == [[-1.0, 2.0, -3.0]]


class Tokens(nn.Module):
    """A (batch, tokens, features) model: the ReLU's feature axis is the last one, inherited from
    the Linear before it (only a traced pass can tell)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 6)
        self.act = nn.ReLU()
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        return self.head(self.act(self.proj(x))).mean(1)


def _same_pass(a, b):
    (out_a, acts_a), (out_b, acts_b) = a, b
    assert torch.equal(out_a, out_b)
    assert list(acts_a) == list(acts_b)
    for name in acts_a:
        assert torch.equal(acts_a[name], acts_b[name])
    assert acts_a.axes == acts_b.axes
    assert (acts_a.output_of, acts_a.output_axis) == (acts_b.output_of, acts_b.output_axis)


@pytest.mark.parametrize("layers", [["act", "proj", ""], ["head"], None])
def test_recorder_passes_equal_forward_with_and_trace_axes_once(layers):
    torch.manual_seed(0)
    model = Tokens().eval()
    x, other = torch.randn(2, 5, 4), torch.randn(3, 5, 4)
    seen_hooks = []  # how many forward hooks a leaf has while each recorder pass runs
    watch = model.proj.register_forward_pre_hook(lambda m, args: seen_hooks.append(len(m._forward_hooks)))
    with Recorder(model, layers, detach=False) as record:
        for _ in range(3):  # the later passes reuse the first one's axes
            _same_pass(record(x), forward_with(model, x, layers, detach=False))
            hooked = [name for name, m in model.named_modules() if m._forward_hooks]
            if layers is not None:  # only the recorded layers keep a hook between passes
                assert sorted(hooked) == sorted(n for n in layers if n)
        _same_pass(record(other), forward_with(model, other, layers, detach=False))  # a new shape: traced
    watch.remove()
    r = int(layers is None or "proj" in layers)  # the recorder's own hook on the leaf
    # a Linear states its feature axis: a pass recording only "head" needs no tracer at all
    t = int(layers != ["head"])
    # each recorder pass (the tracer's hook only on the first pass of a shape), then the
    # forward_with beside it (its tracer and its own hook, beside the recorder's idle one)
    assert seen_hooks == [t + r, t + 2 * r, r, t + 2 * r, r, t + 2 * r, t + r, t + 2 * r]
    if layers == ["act", "proj", ""]:
        assert record(x)[1].axes == {"act": 2, "proj": 2, "": 1}
    assert not any(m._forward_hooks for m in model.modules())  # every hook is gone after the block


def test_recorder_keeps_recording_after_a_layer_changes_shape():
    class Branch(nn.Module):  # the layer's output shape depends on the values it gets
        def __init__(self):
            super().__init__()
            self.act = nn.ReLU()

        def forward(self, x):
            h = self.act(x)
            return h if x.sum() > 0 else h.flatten(1)

    model = Branch()
    up, down = torch.ones(2, 3, 4), -torch.ones(2, 3, 4)
    with Recorder(model, ["act", ""]) as record:
        record(up)
        _same_pass(record(down), forward_with(model, down, ["act", ""]))
        _same_pass(record(up), forward_with(model, up, ["act", ""]))


class Mixed(nn.Module):
    """Conv channels (axis 1), a token Linear (last axis of 3), a pooled Linear head (2 axes)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.norm = nn.BatchNorm2d(4)
        self.tokens = nn.Linear(4, 5)
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        h = self.norm(self.pool(self.conv(x)))  # (N, 4, 3, 3)
        t = self.tokens(h.flatten(2).transpose(1, 2))  # (N, 9, 5)
        return self.head(t.mean(1))


def test_passes_without_tracing_give_the_axes_of_a_traced_pass():
    torch.manual_seed(0)
    model = Mixed().eval()
    x = torch.randn(2, 2, 6, 6)
    layers = ["conv", "pool", "norm", "tokens", "head", ""]
    traced = forward_with(model, x, None)[1]  # every leaf, traced
    seen_hooks = []
    handles = [m.register_forward_pre_hook(lambda m, args: seen_hooks.append(len(m._forward_hooks)))
               for m in (model.conv, model.tokens)]
    with Recorder(model, layers) as record:
        for _ in range(2):
            out, acts = record(x)
            assert {name: acts.axes[name] for name in layers if name} == {name: traced.axes[name] for name in layers if name}
            assert acts.axes[""] == 1 and acts.output_axis == traced.output_axis == 1
    for h in handles:
        h.remove()
    assert seen_hooks == [1, 1, 1, 1]  # the recording hook only: no tracer on any pass


def test_recorded_values_stay_as_their_layer_gave_them_when_a_later_layer_works_in_place():
    """Quick passes hand the layer's own tensor downstream until an in-place operation after it
    changes one; from then on downstream gets a copy, and every pass gives the layer's value."""
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 2, 3), act=nn.ReLU(inplace=True), flat=nn.Flatten(), head=nn.Linear(8, 1)))
    x = torch.randn(3, 1, 4, 4, requires_grad=True)
    with Recorder(model, ["conv", "head"], detach=False) as record:
        for _ in range(3):
            out, acts = record(x)
            expected = model.conv(x)
            assert torch.equal(acts["conv"], expected) and (acts["conv"] < 0).any()
            assert torch.equal(out, model.head(torch.relu(expected).flatten(1)))
            (grad,) = torch.autograd.grad(acts["conv"].sum() + out.sum(), [x])
            (reference,) = torch.autograd.grad(expected.sum() + model.head(torch.relu(expected).flatten(1)).sum(), [x])
            torch.testing.assert_close(grad, reference)
    plain = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 2, 3), act=nn.ReLU(), flat=nn.Flatten(), head=nn.Linear(8, 1)))
    with Recorder(plain, ["conv"], detach=False) as record:
        _, acts = record(x)
        assert acts["conv"]._version == 0 and torch.equal(acts["conv"], plain.conv(x))


def test_a_pass_through_a_model_with_a_map_output_runs_the_model_once():
    """Recording a convolution of a model whose output is a feature map (4 axes) needs no traced
    pass: the output's axis is not asked for. Recording the output itself traces it."""
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3), act=nn.ReLU(), conv2=nn.Conv2d(4, 2, 3))).eval()
    x = torch.randn(2, 3, 8, 8)
    calls = []
    watch = model.conv.register_forward_pre_hook(lambda m, args: calls.append(1))
    with Recorder(model, ["conv2"], detach=False) as record:
        out, acts = record(x)
        assert len(calls) == 1
        assert torch.equal(acts["conv2"], out) and acts.axes["conv2"] == 1 and acts.output_axis is None
        record(x)
        assert len(calls) == 2
    traced = forward_with(model, x, ["conv2", ""])[1]
    assert len(calls) == 4 and traced.output_axis == 1 and traced.axes[""] == 1  # quick, then traced
    watch.remove()
