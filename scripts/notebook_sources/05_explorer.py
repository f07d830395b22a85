# %% [markdown]
# # Navigate a model by clicking: the Explorer
#
# The Deep Visualization Toolbox of Yosinski et al. (2015) in a notebook. One selected unit is
# shown in every view at once:
#
# - **the heatmap** of every layer's activations for an input you pick from the dataset, draw,
#   upload or film, with the unit's gradient over the input and its **top dataset examples**;
# - **the weight grid** of the layer that computes the unit (`fc1` for the `sigmoid` after it),
#   with the unit's tile outlined: its receptive field;
# - **its preferred input**, synthesized by gradient ascent from a few random starts while you look.
#
# **Try it:** click any unit in the heatmap; everything follows. Click a tile in the weight grid to
# go the other way. Change the input with the slider or draw on it: the heatmaps, the gradient and
# *input × weights* in the grid follow. Each click stops the previous optimization and starts a new one.
# %%
import torch
import nbvis

model = nbvis.demo.digits_mlp()  # 784 -> 100 (sigmoid) -> 10, trained on 28x28 digits
images, labels = nbvis.demo.digits()
explorer = nbvis.Explorer(model, (images, labels), labels=nbvis.demo.DIGIT_LABELS, selected=("sigmoid", 12))
explorer
# %% [markdown]
# The selection is plain Python: read it after a click, or set it. `explorer.heatmap`,
# `explorer.grid` and `explorer.optimizer` are the views themselves, with their whole API.
#
# Hidden unit 12 passes through a sigmoid, which in float32 is exactly 1 from an input of about 17
# on, so its gradient would vanish long before the input is interesting. Since the sigmoid only
# rises, the optimizer maximizes the unit before it, `fc1[12]`: the same preferred input
# (`preactivation=False` turns this off). The same holds for ReLU and pooling after a conv layer,
# where a channel that is off for every random start would give no gradient at all.
# %%
print("selected:", explorer.selected)
print("weights shown:", explorer.grid.layer, "unit", explorer.grid.selected)
print("optimizing:", explorer.optimizer.objective_text)
# %% [markdown]
# ## An output class, selected from Python
#
# Select the logit of class 3. Its top dataset examples should be 3s, and the network should call
# the synthesized inputs 3s, with near certainty.
# %%
explorer.selected = ("fc2", 3)
explorer.heatmap.top_job.wait()  # finish the scan of the dataset now (it runs in the background)
print("labels of the top examples:", labels[explorer.heatmap.top.indices].tolist())
explorer.optimizer.wait()
probabilities = torch.softmax(model(explorer.optimizer.inputs), dim=1)
print("the network calls the synthesized inputs:", probabilities.argmax(1).tolist())
print("P(3):", [round(p, 3) for p in probabilities[:, 3].tolist()])
# %% [markdown]
# ## A small CNN: channels and their filters
#
# For a conv channel the grid shows the filters of the conv layer that computes it, through
# ReLU and pooling (`relu2` and `pool2` come from `conv2`). The last layer `fc` reads the 16
# channels of 7×7 after `flatten`, so its weights are shown as 16 small maps per class. The
# synthesized input of `relu2[5]` maximizes the mean of `conv2[5]` over all positions.
# %%
cnn = nbvis.demo.digits_cnn()
cnn_explorer = nbvis.Explorer(cnn, (images, labels), labels=nbvis.demo.DIGIT_LABELS, selected=("relu2", 5))
cnn_explorer
# %%
print({layer: cnn_explorer.weighted_layer(layer) for layer in cnn_explorer.heatmap.layers})
# %% [markdown]
# ## Closing
#
# `close()` stops the optimization and the dataset scan and closes every view: nothing is left
# running, and the model is exactly as it was. The two Explorers above stay open; this one is
# made only to be closed.
# %%
for view in (explorer, cnn_explorer):
    view.optimizer.wait()
scratch = nbvis.Explorer(cnn, (images, labels), selected=("conv2", 3))
scratch.close()
print("after close: dataset scan running:", scratch.heatmap.top_job.running, "| optimizer:", scratch.optimizer.state)
