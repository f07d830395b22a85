# %% [markdown]
# # What is each hidden unit looking for? The weight grid
#
# A 784 → 100 → 10 sigmoid network that reads 28×28 digits (scikit-learn's digits, upsampled),
# trained here in two seconds and cached. Each of the 100 hidden units computes
# `sigmoid(w · x + b)`: its 784 incoming weights `w`, reshaped to 28×28, are the picture of what
# it responds to, its *receptive field*. Red pixels push the unit up, blue pixels push it down.
#
# **Try it:** hover a pixel for its weight and the unit's bias; click a tile to select the unit
# (`grid.selected`); sort by weight norm or bias; switch between a shared and a per-tile color scale.
# %%
import torch
import nbvis

model = nbvis.demo.digits_mlp()
images, labels = nbvis.demo.digits()
grid = nbvis.WeightGrid(model, "fc1", labels=nbvis.demo.DIGIT_LABELS)
grid
# %%
grid.selected  # click a tile above, then run this cell again
# %% [markdown]
# ## The hidden units that vote for a "3"
#
# The output layer weighs the 100 hidden units. The units with the largest outgoing weight into
# class 3 are the ones that make the network say "3". With an input set, the ranking uses each
# unit's actual contribution `w_out[3, j] · h_j` for that image, and *input × weights* shows which
# of the image's pixels feed each unit.
# %%
three = images[labels == 3][0]
top3 = nbvis.WeightGrid(model, "fc1", x=three, sort_by="class", sort_class=3, top_k=6, show_products=True)
top3
# %%
print("largest outgoing weights into class 3:", grid.top_units(3, k=6))
print("largest contributions for this image: ", top3.units())
# %% [markdown]
# ## The smallest network that tells 0 from 1
#
# One hidden unit between the image and two outputs (784 → 1 → 2). Its single receptive field is
# the whole decision: a template that is positive where 1s have ink and negative where 0s do.
# %%
tiny = nbvis.demo.tiny_net()
nbvis.WeightGrid(tiny, "fc1")
# %% [markdown]
# ## Watch receptive fields form while a network trains
#
# `live=True` follows the weights while a training loop runs in another cell: the grid refreshes
# after optimizer steps (at most four times a second), with no change to the model. The loop
# below trains a fresh network for eight seconds, long enough to watch the tiles turn from
# noise into strokes; turning live mode off at the end draws the final weights.
# %%
torch.manual_seed(1)
fresh = nbvis.demo._mlp()
live = nbvis.WeightGrid(fresh, "fc1", page_size=36, live=True)
live
# %%
import time

optimizer = torch.optim.Adam(fresh.parameters(), lr=1e-3)
epochs, deadline = 0, time.monotonic() + 8.0
while epochs == 0 or time.monotonic() < deadline:
    for start in range(0, len(images), 64):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(fresh(images[start:start + 64]), labels[start:start + 64])
        loss.backward()
        optimizer.step()
    epochs += 1
live.live = False  # stop following; the grid shows the weights as training left them
print(f"loss after {epochs} epochs: {loss.item():.3f}")
shown = live.tiles()[..., 0].reshape(len(live.units()), -1)
print("the grid shows the final weights:", bool((shown == fresh.fc1.weight.detach().numpy()[live.units()]).all()))
# %% [markdown]
# ## Convolution filters
#
# For a conv layer each tile is one filter. A single input channel shows as one image; several
# channels are laid out side by side (or reduced with `reduce="mean"`, `"norm"` or a channel index);
# three input channels show as RGB.
# %%
cnn = nbvis.demo.digits_cnn()
nbvis.WeightGrid(cnn, "conv1")
# %%
nbvis.WeightGrid(cnn, "conv2", page_size=16)
