# %% [markdown]
# # Building blocks: neuron groups and the semantic dictionary
#
# Two views from Olah et al., "The Building Blocks of Interpretability" (Distill, 2018):
#
# - **Neuron groups.** One input's activations at a conv layer, `(C, H, W)`, read as `H*W` positions
#   of `C` channels and factorized by non-negative matrix factorization (scikit-learn's `NMF`) into
#   `k` groups of channels that fire together. Each group gets a hue; its map is laid over the input,
#   its channel factor gets a feature visualization as an icon, and a table shows how much each group
#   pushes each of the top classes up (red) or down (blue).
# - **The semantic dictionary.** For the position under the pointer, the layer's strongest channels,
#   each shown by its feature visualization with a bar of its activation divided by the layer's maximum.
#
# The icons are computed in the background, once per unit or direction, and shared by every view of
# the model (and kept on disk under the nbvis cache directory). Until an icon is ready, the unit's top
# dataset example (dashed border) stands in for it.
#
# **Try it:** hover a group in the legend or the table to isolate it on the map; move the k slider or
# pick another layer; click a group to select its direction. In the dictionary, move the pointer over
# the input; click to pin a position; click a channel to select it.
# %%
import nbvis

cnn = nbvis.demo.digits_cnn()  # conv1 -> relu1 -> pool1 -> conv2 -> relu2 (16 x 14 x 14) -> pool2 -> fc
images, labels = nbvis.demo.digits()
groups = nbvis.NeuronGroups(cnn, images[0], layer="relu2", k=4, dataset=(images, labels),
                            labels=nbvis.demo.DIGIT_LABELS, icon_steps=96)
groups
# %% [markdown]
# The result is plain data: the spatial maps `(k, H, W)`, the channel factors `(k, C)`, the share of the
# activation the groups reconstruct (R² = 1 − |A − WH|² / |A|²) and each group's attribution to the top
# classes (the group's share of the activation dotted with the gradient of the logit).
# %%
g = groups.groups
print("layer", g.layer, "spatial", g.spatial.shape, "channels", g.channels.shape, f"R^2 = {g.r2:.3f}")
print("top classes", [nbvis.demo.DIGIT_LABELS[c] for c in g.classes])
print("attribution of group 0:", g.attribution[0].round(2))
# %% [markdown]
# A layer with negative values (before its ReLU) is refused with a hint, or clipped on request:
# %%
try:
    nbvis.neuron_groups(cnn, images[0], "conv2", k=4)
except ValueError as err:
    print(err)
# %%
dictionary = nbvis.SemanticDictionary(cnn, images[0], layer="relu2", k=5, dataset=images, icon_steps=96)
dictionary
# %% [markdown]
# The first position shown is the one with the largest activation. `dictionary.entries()` lists the pinned
# position's channels; `dictionary.selected` is the channel you clicked.
# %%
print("position", dictionary.position, "entries", [(c, round(v, 2)) for c, v, _ in dictionary.entries()])
# %% [markdown]
# ## An RGB model
#
# `nbvis.demo.photo_cnn()` is trained at first use (a few seconds, then cached) on 32 × 32 patches of the
# two photographs that ship with scikit-learn (`load_sample_images`: a temple in China and a flower), to
# tell which photograph a patch comes from. Its layers accept any image size: here a 64 × 64 crop of the
# temple's side against the sky and the lake. Try k = 2: temple against sky and water.
# %%
photo = nbvis.demo.photo_cnn()
patches, patch_labels = nbvis.demo.photo_patches()
temple = nbvis.demo.photos()[0, :, ::2, ::2][:, 70:134, 140:204].contiguous()
rgb_groups = nbvis.NeuronGroups(photo, temple, layer="relu2", k=3, labels=nbvis.demo.PHOTO_LABELS, icon_steps=64)
rgb_groups
# %%
nbvis.SemanticDictionary(photo, temple, layer="relu2", k=4, dataset=patches, icon_steps=64)
