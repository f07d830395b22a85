"""Activation maximization: nbvis against the loops a user would otherwise write or reach for.

0. ``maximize`` without regularizers against the bare PyTorch loop (hook, forward, backward,
   Adam) at three model sizes. Target: at most 1.05x per step at every size.
1. Pixel parametrization with the four regularizers of Yosinski et al. 2015 switched on together
   and live streaming as the OptimizationViewer runs it (``run.advance``: the steps of about
   ``STREAM_SECONDS`` in one borrow; uint8 frames of all starts, packed to bytes, at most 30 per
   second), against the bare PyTorch loop: forward with a forward hook, backward, Adam step.
   Target: at most 1.15x per step.
2. Fourier parametrization with jitter / scale / rotation transforms, against Lucent's
   ``render_vis`` (torch-lucent, a benchmark-only dependency) at the same image size, objective
   and step count, against the bare pixel loop, and against the same Fourier + transforms steps
   written by hand (nbvis's image and resampling, the run's bookkeeping left out). Targets: Lucent
   at least 1.5x slower (fixed image size), nbvis at most 1.10x the bare pixel loop and at most
   1.05x the same steps by hand.
3. A deep model (a Hugging Face ResNet with ResNet-50's blocks, 284 modules, random weights):
   ``maximize`` and the run streamed as the OptimizationViewer runs it (``run.advance``) against
   the bare loop (targets: at most 1.05x, as in 0.), and the run stepped one ``run.step()`` at a
   time (``run.iter``: the model borrowed around every step; shown, no target); then the model in
   train mode, as while its owner trains it between the steps: ``run.iter`` against the bare loop
   with ``model.eval()`` and ``model.train()`` around each step (target: at most 1.05x).

Every timing is taken in the same process, rounds interleaved (the contenders' order turned by
one each round); CPU time of this process is reported beside wall time, since other work on a
shared machine inflates wall time at random.
Ratios are medians of per-round ratios of CPU time; each detail line gives the middle half of
the rounds' ratios beside it (how far a single round strays on this machine). On Linux the script
runs with glibc's allocator keeping the memory it has (``KEEP_MEMORY``; ``--allocator-as-is``
leaves the defaults), so that page faults, which come and go with the order of allocations, do not
decide a ratio.
``rows()`` returns ``(name, ratio, target, met)`` tuples, the convention of the benchmark scripts.
Run: ``python benchmarks/bench_optimize.py [--steps 32] [--rounds 5] [--size 128] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import random
import statistics
import sys
import tempfile
import time
from collections import OrderedDict

import torch
from torch import nn

from _rows import add_options, no_cuda, row
from nbvis.compute.optimize import OptimizationRun, Regularizers, affine_resample, maximize
from nbvis.compute.optimize.parametrizations import Fourier
from nbvis.compute.optimize.run import STREAM_SECONDS

PAPER_FOUR = Regularizers(decay=1e-4, blur_width=1.0, blur_every=4, norm_pct=50, contribution_pct=90)
FRAME_INTERVAL = 1 / 30


def sized_cnn(width: int, size: int) -> nn.Module:
    """A 3-w-2w conv net with a linear head (the issue's 3-16-32 + linear at width 16)."""
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, width, 3, padding=1),
            relu1=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(width, 2 * width, 3, padding=1),
            relu2=nn.ReLU(),
            pool2=nn.MaxPool2d(2),
            flatten=nn.Flatten(),
            head=nn.Linear(2 * width * (size // 4) ** 2, 10),
        )
    ).eval()


SIZES = {"3-8-16 + linear, 32 px": (8, 32), "3-16-32 + linear, 64 px": (16, 64), "3-32-64 + linear, 128 px": (32, 128)}
# rounds of section 0 per round asked for: a run of the small models takes milliseconds, so that
# more rounds cost little and keep a burst of load on a shared machine from deciding the median
ROUNDS_PER_SIZE = {32: 5, 64: 3, 128: 2}
# and of sections 1 to 3 (a few tenths of a second per contender and round): a ratio within 10%
# of its target takes more than five rounds to tell on a shared machine
ROUNDS_PER_CNN = 3


def plain_loop(model, shape, steps, layer="head") -> Clock:
    """``maximize`` with no regularizers, as a user calls it."""
    with Clock() as clock:
        maximize(model, (layer, 3), shape[1:], steps=steps, starts=shape[0])
    return clock


def streamed_steps(run, steps):
    """The run's last Step after each ``run.advance`` as the OptimizationViewer makes them (the steps
    of about ``STREAM_SECONDS`` in one borrow), until the run has taken ``steps`` steps."""
    while run.step_count < steps:
        yield run.advance(steps - run.step_count, seconds=STREAM_SECONDS)


def stepped_loop(model, shape, steps, layer, streamed=False) -> Clock:
    """The same steps one ``run.step()`` at a time (``run.iter``): the model is borrowed and given
    back around every step; or (``streamed``) as the OptimizationViewer streams them,
    ``run.advance`` borrowing it once for the steps of about ``STREAM_SECONDS``. The run is made
    as the viewer makes it (its check of the objective is the first step's pass)."""
    with Clock() as clock:
        run = OptimizationRun(model, (layer, 3), shape[1:], starts=shape[0])
        if streamed:
            for _ in streamed_steps(run, steps):
                pass
        else:
            for _ in run.iter(steps):
                pass
    return clock


def deep_resnet() -> nn.Module:
    """A Hugging Face ResNet with ResNet-50's block layout (bottlenecks, depths 3-4-6-3) at small
    widths: 284 modules and 158 parameters, random weights (no download)."""
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(0)
    config = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[3, 4, 6, 3],
                          layer_type="bottleneck", num_labels=10)
    return ResNetForImageClassification(config).eval()


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 32, 3, padding=1),
            relu1=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(32, 64, 3, padding=1),
            relu2=nn.ReLU(),
            pool2=nn.MaxPool2d(2),
            conv3=nn.Conv2d(64, 64, 3, padding=1),
            relu3=nn.ReLU(),
        )
    ).eval()


class Clock:
    """Wall time and this process's CPU time; on a shared machine the CPU time is the steady one."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


@contextlib.contextmanager
def by_hand(model, layer):
    """What a hand-written loop sets up and takes down (inside its timing, as the nbvis calls
    are): the parameters frozen and a forward hook on ``layer``; yields the dict it fills."""
    for p in model.parameters():
        p.requires_grad_(False)
    seen = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: seen.__setitem__("a", o))
    try:
        yield seen
    finally:
        handle.remove()
        for p in model.parameters():
            p.requires_grad_(True)


def bare_loop(model, shape, steps, layer="conv3", channel=5, train_between=False) -> Clock:
    """What a user writes by hand: hook, forward, backward, Adam; with ``train_between``, each step
    between ``model.eval()`` and ``model.train()`` (a model that trains between the steps)."""
    with Clock() as clock, by_hand(model, layer) as seen:
        x = (0.1 * torch.randn(shape)).requires_grad_(True)
        optimizer = torch.optim.Adam([x], lr=0.05)
        for _ in range(steps):
            if train_between:
                model.eval()
            optimizer.zero_grad(set_to_none=True)
            model(x)
            loss = -seen["a"][:, channel].mean()
            loss.backward()
            optimizer.step()
            if train_between:
                model.train()
    return clock


def hand_fourier_loop(model, shape, steps, regs, layer="conv3", channel=5) -> Clock:
    """The steps of ``nbvis_loop(..., "fourier")`` written by hand on nbvis's own parts (the
    Fourier image and ``affine_resample``), with the same random draws: what the transforms cost
    by themselves, apart from the run's bookkeeping."""
    with Clock() as clock, by_hand(model, layer) as seen:
        image = Fourier(shape[1:], shape[0], torch.Generator().manual_seed(0), torch.device("cpu"), torch.float32, None)
        optimizer = torch.optim.Adam([image.param], lr=0.05)
        draws = random.Random(0)
        for _ in range(steps):
            x = image.image((draws.randint(-regs.jitter, regs.jitter), draws.randint(-regs.jitter, regs.jitter)))
            zoom = 1.0 + draws.uniform(-regs.scale, regs.scale)
            model(affine_resample(x, zoom, draws.uniform(-regs.rotate, regs.rotate)))
            loss = -seen["a"][:, channel].mean()
            (image.param.grad,) = torch.autograd.grad(loss, [image.param])
            optimizer.step()
    return clock


def nbvis_loop(model, shape, steps, regularizers, parametrization="pixel", stream=True) -> Clock:
    """nbvis as the OptimizationViewer runs it (timed from the run's creation): ``run.advance``
    does the steps of about ``STREAM_SECONDS`` in one borrow, and (``stream``) a consumer turns the
    last of them into packed uint8 frames at a capped rate."""
    frames = 0
    last = -1.0
    with Clock() as clock:
        run = OptimizationRun(
            model, ("conv3", 5), shape[1:], starts=shape[0], regularizers=regularizers, parametrization=parametrization
        )
        for step in streamed_steps(run, steps):
            if stream and time.perf_counter() - last >= FRAME_INTERVAL:
                step.images.tobytes()
                step.values  # noqa: B018 - the objective curve is sent with each frame
                frames += 1
                last = time.perf_counter()
    clock.frames = frames
    return clock


def lucent_modules():
    """Import Lucent; with no importable torchvision, provide only torchvision.transforms.Normalize."""
    try:
        importlib.import_module("torchvision.transforms")
        stand_in = False
    except Exception:
        folder = tempfile.mkdtemp(prefix="tv-stand-in-")
        package = os.path.join(folder, "torchvision")
        os.makedirs(package)
        open(os.path.join(package, "__init__.py"), "w").close()
        with open(os.path.join(package, "transforms.py"), "w") as f:
            f.write(
                "import torch\n"
                "class Normalize:\n"
                "    def __init__(self, mean, std):\n"
                "        self.mean = torch.tensor(mean)[:, None, None]\n"
                "        self.std = torch.tensor(std)[:, None, None]\n"
                "    def __call__(self, t):\n"
                "        return (t - self.mean.to(t.device)) / self.std.to(t.device)\n"
            )
        sys.path.insert(0, folder)
        stand_in = True
    from lucent.optvis import param, render

    return render, param, stand_in


def lucent_loop(render, param, model, size, starts, steps, fixed_image_size) -> Clock:
    with Clock() as clock:
        render.render_vis(
            model,
            "conv3:5",
            param_f=lambda: param.image(size, batch=starts),
            thresholds=(steps,),
            show_image=False,
            progress=False,
            fixed_image_size=fixed_image_size,
        )
    return clock


def compare(rounds, contenders: dict) -> dict:
    """Run every contender once per round, interleaved, the order turned by one each round (no
    contender always runs right after the same other one); per contender: median wall and CPU
    seconds and the per-round ratios to the first contender."""
    clocks = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        turn = r % len(names)
        for name in names[turn:] + names[:turn]:
            clocks[name].append(contenders[name]())
    first = next(iter(clocks.values()))
    out = {}
    for name, found in clocks.items():
        cpu_ratios = [c.cpu / b.cpu for c, b in zip(found, first)]
        out[name] = {
            "wall": statistics.median(c.wall for c in found),
            "cpu": statistics.median(c.cpu for c in found),
            "wall_ratio": statistics.median(c.wall / b.wall for c, b in zip(found, first)),
            "cpu_ratio": statistics.median(cpu_ratios),
            # the middle half of the rounds' ratios: how far one round's ratio strays on this machine
            "cpu_quartiles": _quartiles(cpu_ratios),
            "frames": getattr(found[-1], "frames", 0),
        }
    return out


def _quartiles(values: list) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4)
    return q1, q3


def report(label, entry, steps, baseline_word="ratio"):
    print(
        f"   {label:<52} {1000 * entry['cpu'] / steps:7.2f} ms/step CPU ({1000 * entry['wall'] / steps:7.2f} wall)"
        f"   {baseline_word} CPU {entry['cpu_ratio']:.3f}x (wall {entry['wall_ratio']:.3f}x; "
        f"middle half of the rounds {entry['cpu_quartiles'][0]:.2f}-{entry['cpu_quartiles'][1]:.2f}x)"
    )


def rows(steps: int = 32, rounds: int = 5, size: int = 128, starts: int = 1, threads: int = 1, echo=print):
    """Run every comparison; return ``(name, ratio, target, met)`` rows (and print the details)."""
    torch.set_num_threads(threads)
    out = []
    try:  # (made before Lucent's torchvision stand-in exists: transformers would import it)
        deep = deep_resnet()
    except ImportError:
        deep = None
    echo(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {steps} steps; {rounds} interleaved rounds "
         f"times {ROUNDS_PER_SIZE} by image size in section 0 and {ROUNDS_PER_CNN} in sections 1 to 3; "
         "ratios are medians of per-round CPU-time ratios")

    echo("\n0. maximize, no regularizers, vs the bare PyTorch loop (hook+forward+backward+Adam)")
    for label, (width, side) in SIZES.items():
        model = sized_cnn(width, side)
        shape = (starts, 3, side, side)
        bare_loop(model, shape, 4, layer="head", channel=3)
        plain_loop(model, shape, 4)
        found = compare(rounds * ROUNDS_PER_SIZE[side], {
            "bare": lambda: bare_loop(model, shape, steps, layer="head", channel=3),
            "nbvis": lambda: plain_loop(model, shape, steps),
        })
        report(f"{label}: nbvis maximize", found["nbvis"], steps)
        ratio = found["nbvis"]["cpu_ratio"]
        out.append((f"maximize, no regularizers, {label} / bare loop", ratio, "<= 1.05", ratio <= 1.05))

    model = small_cnn()
    shape = (starts, 3, size, size)
    bare_loop(model, shape, 4)  # warm-up: allocator, kernels, first-use imports
    nbvis_loop(model, shape, 4, PAPER_FOUR)
    found = compare(rounds * ROUNDS_PER_CNN, {
        "bare": lambda: bare_loop(model, shape, steps),
        "quiet": lambda: nbvis_loop(model, shape, steps, PAPER_FOUR, stream=False),
        "stream": lambda: nbvis_loop(model, shape, steps, PAPER_FOUR),
    })
    echo(f"\n1. small CNN 3-32-64-64 at {size} px, the paper's four regularizers together, live frames")
    report("bare PyTorch loop (hook+forward+backward+Adam)", found["bare"], steps)
    report("nbvis, four regularizers, no frames", found["quiet"], steps)
    report(f"nbvis, four regularizers + frames ({found['stream']['frames']} per run)", found["stream"], steps)
    ratio = found["stream"]["cpu_ratio"]
    out.append((f"pixel, four regularizers + frames, {size} px / bare loop", ratio, "<= 1.15", ratio <= 1.15))

    try:
        render, param, stand_in = lucent_modules()
    except ImportError as err:
        echo(f"\n2. skipped: Lucent is not installed ({err}); "
             "pip install --no-deps torch-lucent==0.1.8 kornia==0.5.11 decorator")
        return out + deep_rows(deep, steps, rounds, starts, echo)
    if stand_in:
        echo("\n(torchvision is not importable here: Lucent runs with a stand-in module that provides only "
             "torchvision.transforms.Normalize)")
    lucid = Regularizers(jitter=8, scale=0.1, rotate=10)
    lucent_loop(render, param, model, size, starts, 2, size)
    nbvis_loop(model, shape, 2, lucid, "fourier", stream=False)
    fourier = lambda: nbvis_loop(model, shape, steps, lucid, "fourier", stream=False)  # noqa: E731
    found = compare(rounds * ROUNDS_PER_CNN, {
        "nbvis": fourier,
        "fixed": lambda: lucent_loop(render, param, model, size, starts, steps, size),
        "bare": lambda: bare_loop(model, shape, steps),
        "hand": lambda: hand_fourier_loop(model, shape, steps, lucid),
    })
    # Lucent's default (upsampled to 224 px, four times the work) is shown, not a target: fewer rounds
    found["default"] = compare(rounds, {
        "nbvis": fourier,
        "default": lambda: lucent_loop(render, param, model, size, starts, steps, None),
    })["default"]
    echo(f"\n2. Fourier parametrization + jitter/scale/rotation, {size} px, same objective and steps")
    report("nbvis", found["nbvis"], steps, "vs nbvis")
    report(f"Lucent render_vis, fixed_image_size={size}", found["fixed"], steps, "vs nbvis")
    report("Lucent render_vis, default (upsampled to 224 px)", found["default"], steps, "vs nbvis")
    report("bare pixel loop, no transforms", found["bare"], steps, "vs nbvis")
    report("the same Fourier + transforms steps by hand", found["hand"], steps, "vs nbvis")
    lucent = found["fixed"]["cpu_ratio"]
    over_bare = 1.0 / found["bare"]["cpu_ratio"]
    over_hand = 1.0 / found["hand"]["cpu_ratio"]
    out.append((f"Lucent render_vis (fixed size) / nbvis, Fourier + transforms, {size} px", lucent, ">= 1.5", lucent >= 1.5))
    out.append((f"nbvis Fourier + transforms / bare pixel loop, {size} px", over_bare, "<= 1.10", over_bare <= 1.10))
    # the transforms' own cost set apart: nbvis against the same steps by hand, as section 0 does
    # for the plain steps
    out.append((f"nbvis Fourier + transforms / the same steps by hand, {size} px", over_hand, "<= 1.05", over_hand <= 1.05))
    return out + deep_rows(deep, steps, rounds, starts, echo)


# glibc gives memory back to the system when more than its trim threshold lies free at the top of
# its heap, and maps blocks above its mmap threshold one by one: a loop that frees and allocates a
# few MB a step then page-faults on that memory again at every step, or does not, by the luck of its
# allocation order (seen here for the very same steps: 0 or 1500 faults a step, some 3 ms of a 14 ms
# step). Kept for every contender alike, the memory no longer decides a ratio.
KEEP_MEMORY = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824"


def _keep_memory() -> None:
    """Run this script again with :data:`KEEP_MEMORY` (Linux, unless GLIBC_TUNABLES is set already)."""
    if sys.platform.startswith("linux") and "GLIBC_TUNABLES" not in os.environ:
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "GLIBC_TUNABLES": KEEP_MEMORY})


def deep_rows(model, steps, rounds, starts, echo=print) -> list:
    """Section 3: ``maximize`` and the stepped run on a deep model (None: transformers is missing),
    against the bare loop."""
    if model is None:
        echo("\n3. skipped: transformers is not installed")
        return []
    layer, shape = "classifier.1", (starts, 3, 64, 64)
    bare_loop(model, shape, 4, layer=layer, channel=3)
    plain_loop(model, shape, 4, layer)
    stepped_loop(model, shape, 4, layer)
    stepped_loop(model, shape, 4, layer, streamed=True)
    found = compare(rounds * ROUNDS_PER_CNN, {
        "bare": lambda: bare_loop(model, shape, steps, layer=layer, channel=3),
        "nbvis": lambda: plain_loop(model, shape, steps, layer),
        "streamed": lambda: stepped_loop(model, shape, steps, layer, streamed=True),
        "stepped": lambda: stepped_loop(model, shape, steps, layer),
    })
    echo("\n3. a deep model: Hugging Face ResNet, ResNet-50's blocks (284 modules), 64 px, logit 3, no regularizers")
    report("bare PyTorch loop (hook+forward+backward+Adam)", found["bare"], steps)
    report("nbvis maximize (one borrow for the run)", found["nbvis"], steps)
    report("nbvis run.advance (a borrow per frame, as the viewer)", found["streamed"], steps)
    report("nbvis run.iter (one borrow a step)", found["stepped"], steps)
    ratio, streamed, stepped = (found[k]["cpu_ratio"] for k in ("nbvis", "streamed", "stepped"))
    # the model in train mode, as while its owner trains it between the steps: each borrow puts
    # every module in eval mode and back
    model.train()
    try:
        bare_loop(model, shape, 4, layer=layer, channel=3, train_between=True)
        stepped_loop(model, shape, 4, layer)
        training = compare(rounds * ROUNDS_PER_CNN, {
            "bare": lambda: bare_loop(model, shape, steps, layer=layer, channel=3, train_between=True),
            "stepped": lambda: stepped_loop(model, shape, steps, layer),
        })
    finally:
        model.eval()
    report("the model in train mode: bare loop, model.eval() / model.train() around each step", training["bare"], steps)
    report("the model in train mode: nbvis run.iter (one borrow a step)", training["stepped"], steps)
    in_training = training["stepped"]["cpu_ratio"]
    return [
        ("maximize, no regularizers, HF ResNet-50 blocks, 64 px / bare loop", ratio, "<= 1.05", ratio <= 1.05),
        ("streamed as the viewer runs it, HF ResNet-50 blocks, 64 px / bare loop", streamed, "<= 1.05", streamed <= 1.05),
        ("run.iter (a borrow a step), HF ResNet-50 blocks, 64 px / bare loop", stepped, "", None),
        ("run.iter, the model in train mode, HF ResNet-50 blocks, 64 px / bare loop with model.eval() and "
         "model.train() around each step", in_training, "<= 1.05", in_training <= 1.05),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--starts", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps CPU time meaningful)")
    parser.add_argument("--allocator-as-is", action="store_true",
                        help="leave glibc's allocator at its defaults (see KEEP_MEMORY)")
    add_options(parser)
    args = parser.parse_args()
    if not args.allocator_as_is:
        _keep_memory()
    print(f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')}")
    rounds = min(args.rounds, 3) if args.quick else args.rounds
    found = rows(args.steps, rounds, args.size, args.starts, args.threads)
    print()
    for name, ratio, target, met in found:
        verdict = f"target {target:<7} {'met' if met else 'NOT met'}" if target else "(no target)"
        print(f"  {name:<70} {ratio:7.3f}x  {verdict}")
    for name, ratio, target, met in found:
        row(name, f"{ratio:.3f}x", target + "x" if target else "", met)
    row("maximize on a CUDA GPU", no_cuda() or "see bench_optimize.py on a GPU machine", "", None)


if __name__ == "__main__":
    main()
