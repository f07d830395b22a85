# %% [markdown]
# # What does a unit want to see? Activation maximization, live
#
# Start from random noise and follow the gradient of one unit's activation with respect to the
# input, `x ← x + α · ∂a/∂x`. The input that comes out is what the unit responds to most (Erhan
# et al. 2009; Yosinski et al. 2015). Several random starts run side by side, in one batch: where
# they agree, the unit is picky; where they differ, it is invariant.
#
# Without a prior the result is a *fooling image*: the network is sure, a person sees noise. The
# natural-image priors of Yosinski et al. 2015 (L2 decay, a Gaussian blur every few steps,
# clipping pixels with a small norm or a small contribution) make the images readable. The
# paper's four hyperparameter sets are presets, `"yosinski2015-1"` … `"yosinski2015-4"`
# (`"yosinski2015"` is the third), each with the paper's optimizer: plain gradient ascent with the
# Deep Visualization Toolbox's learning-rate rule, scaled to the input's range. `"lucid"` (random
# shifts, zoom and rotation, scaled to the input's size) and `"distill2017"` (the Feature
# Visualization article: a decorrelated Fourier space, 512 steps) add a **diversity** penalty that
# keeps the starts apart, so that they show different facets of what the unit wants. `"data"`,
# the default when the view has the dataset, decorrelates with the data's own covariance: the
# optimizer moves the pixels along the ways the dataset's samples vary, so the images look more
# like its samples.
#
# Give the view the data (`dataset=` or `value_range=`): the inputs then stay inside the data's
# range, the range is shown under the images, and hovering a pixel gives its value in data units.
# When a run ends, a **quality row** under the images tells a meaningful visualization from a
# fooling image: the model's confidence under small shifts, the nearest of the unit's top dataset
# examples, the distance between the starts, and the share of high frequencies.
#
# **Try it:** stop, resume, or start again: each Start draws a new seed (shown; type one to
# repeat a run). Move a slider (it applies at the next start or resume); hover an image.
# %%
import torch
import nbvis
from nbvis.compute.optimize import unit, logit

mlp = nbvis.demo.digits_mlp()  # 784 -> 100 (sigmoid) -> 10, trained on 28x28 digits
cnn = nbvis.demo.digits_cnn()  # conv1 (8) -> conv2 (16) -> fc (10)
images, labels = nbvis.demo.digits()
# %% [markdown]
# ## The digits CNN's output classes
#
# Four random starts maximize the logit of class 3. With the dataset known, the default priors
# are `"data"`: the image is the data's mean plus a combination of the ways the digits vary
# (the pixels whitened by the dataset's covariance, shrunk a little towards a smooth image prior,
# so that strokes the data never draw come slowly), optimized under random shifts of up to 2 px,
# zoom and rotation, with diversity between the starts, a light decay and blur, and a learning
# rate that anneals along a cosine so that the images settle; the pixels stay in the data's 0…1.
# (`"smooth"` is the same on the pixels themselves: brighter blobs that the network likes as
# much.) The quality row's "P(class)" is the network's probability of the class averaged over
# every shift of up to 2 px: the images stay the class when moved. The run goes on in the
# background: the kernel stays free, and the next cells run while the images form.
# %%
three = nbvis.OptimizationViewer(cnn, objective=3, input_shape=(1, 28, 28), starts=4, dataset=(images, labels), seed=3)
three
# %%
three.wait()  # finish the run (here: before reading the result)
print("preset:", three.preset, " range:", three.value_range, " seed:", three.seed)
print(three.quality)
print("class the network sees:", cnn(three.inputs).argmax(1).tolist())
print("pixels:", round(float(three.inputs.min()), 3), "…", round(float(three.inputs.max()), 3))
# %% [markdown]
# The same class on the pixels themselves (`regularizers="smooth"`): the network is as sure, but
# the picture is further from any digit.
# %%
pixels = nbvis.OptimizationViewer(cnn, objective=3, input_shape=(1, 28, 28), starts=4, dataset=(images, labels),
                                  regularizers="smooth", seed=3)
pixels
# %% [markdown]
# ### Fooling images: no prior at all
#
# The same objective with `regularizers="none"` and no range: the network is as sure of the
# unshifted image, yet the picture is noise, it leaves the data's range, and much of its energy
# sits at high frequencies.
# %%
fooled = nbvis.maximize(cnn, 3, (1, 28, 28), steps=300, starts=4, regularizers="none", lr=0.3)
print(fooled.evaluate(cnn, images))
print("pixels:", round(float(fooled.inputs.min()), 2), "…", round(float(fooled.inputs.max()), 2))
# %% [markdown]
# ### Ten classes, and "a 3, but not an 8"
#
# Every class of the MLP with the default priors for known data: each image is closest to its
# own class's mean digit. Objectives combine: `unit("fc2", 3) - unit("fc2", 8)` looks for what
# separates two classes.
# %%
means = torch.stack([images[labels == c].mean(0) for c in range(10)]).flatten(1)
for c in range(10):
    result = nbvis.maximize(mlp, c, (1, 28, 28), steps=200, starts=4, regularizers="auto", dataset=images, seed=c)
    x = result.inputs.flatten(1)
    corr = torch.corrcoef(torch.cat([x, means]))[: len(x), len(x):]
    print(c, "nearest class mean:", corr.argmax(1).tolist(), " P(class):", torch.softmax(mlp(result.inputs), 1)[:, c].detach().numpy().round(3).tolist())
# %%
contrast = nbvis.OptimizationViewer(mlp, objective=unit("fc2", 3) - unit("fc2", 8), input_shape=(1, 28, 28),
                                    steps=200, starts=3, dataset=images)
contrast
# %% [markdown]
# ## Hidden units of the MLP
#
# Hidden unit 17 of `fc1` (before the sigmoid) with the paper's L2 preset (`"yosinski2015-2"`:
# decay 0.3, plain gradient ascent for 750 steps). For a single linear unit the best input under
# an L2 prior points along its weights: compare with its receptive field in the weight grid.
# %%
hidden = nbvis.OptimizationViewer(mlp, objective=("fc1", 17), input_shape=(784,), starts=4,
                                  regularizers="yosinski2015-2")
hidden
# %%
hidden.wait()
weights = mlp.fc1.weight[17].detach()
similarity = torch.nn.functional.cosine_similarity(hidden.inputs.flatten(1), weights[None], dim=1)
print("optimizer:", hidden.run.ascent)
print("cosine similarity of each start with unit 17's weights:", [round(s, 4) for s in similarity.tolist()])
# %% [markdown]
# ## The small CNN's channels
#
# A conv channel's objective is its mean over all positions; `(layer, channel, (y, x))` takes one
# position instead, which shows the channel's receptive field. With the data's range the pixels
# stay within 0…1 (without it, conv2[5] drives them far past 1). A ReLU channel that no start
# turns on gets no gradient; for the first steps its gradient is redirected (as in Lucid), so it
# still wakes up. `"distill2017"` optimizes in a decorrelated Fourier space.
# %%
channel = nbvis.OptimizationViewer(cnn, objective=("conv2", 5), input_shape=(1, 28, 28), steps=300, starts=4,
                                   dataset=images)
channel
# %%
one_position = nbvis.OptimizationViewer(cnn, objective=("conv2", 5, (7, 7)), input_shape=(1, 28, 28), steps=300,
                                        starts=4, regularizers="yosinski2015-4", dataset=images)
one_position
# %%
fourier = nbvis.OptimizationViewer(cnn, objective=("relu2", 11), input_shape=(1, 28, 28), steps=300, starts=4,
                                   regularizers="distill2017", dataset=images)
fourier
# %%
for viewer in (channel, one_position, fourier):
    viewer.wait()
    print(f"{viewer.objective_text:>16} ({viewer.preset}): objective {viewer.history[0].mean():7.3f} -> "
          f"{viewer.history[-1].mean():7.3f}, pixels {float(viewer.inputs.min()):.2f}…{float(viewer.inputs.max()):.2f}")
# %% [markdown]
# ## A tabular model: the input is a vector, shown as bars
#
# A small regression network on scikit-learn's diabetes data. Maximizing its output asks: which
# (standardized) patient profile does the model predict the worst progression for? The range of
# the standardized data bounds the profile.
# %%
from sklearn.datasets import load_diabetes

data = load_diabetes()
X = torch.tensor(data.data, dtype=torch.float32)
X = (X - X.mean(0)) / X.std(0)
y = torch.tensor(data.target, dtype=torch.float32)[:, None]
torch.manual_seed(0)
regressor = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
optimizer = torch.optim.Adam(regressor.parameters(), lr=0.01)
for _ in range(300):
    optimizer.zero_grad()
    torch.nn.functional.mse_loss(regressor(X), y).backward()
    optimizer.step()
profile = nbvis.OptimizationViewer(regressor, objective=("2", 0), input_shape=(10,), steps=150, starts=3,
                                   regularizers={"decay": 0.05, "diversity": 0.3}, dataset=X,
                                   feature_names=data.feature_names)
profile
