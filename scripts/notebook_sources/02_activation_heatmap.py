# %% [markdown]
# # Watch every layer react, and ask any unit why: the activation heatmap
#
# Feed a digit to a network and watch every neuron respond (the core idea of the Deep
# Visualization Toolbox), then pick any unit and ask what in the input changes it: its gradient,
# or the guided backpropagation / deconvnet maps for ReLU networks.
#
# The first model is the classic 784 → 100 → 10 sigmoid network on 28×28 digits (scikit-learn's
# digits, upsampled), trained here in two seconds and cached.
#
# **Try it:**
# - hover any unit: its value shows at once (the activations are already in the browser);
# - drag the *sample* slider or type an index to feed another digit from the dataset;
# - draw on the input with the mouse (shift-drag erases, *clear* starts over): every layer
#   updates while you draw;
# - upload a photo of a digit, or turn on the webcam, if your browser allows it;
# - click a unit: its gradient over the input appears on the left, and its top examples from
#   the dataset at the bottom (click one to use it as the input).
# %%
import numpy as np
import torch
import nbvis

model = nbvis.demo.digits_mlp()
images, labels = nbvis.demo.digits()
view = nbvis.ActivationHeatmap(model, images[0], labels=nbvis.demo.DIGIT_LABELS, dataset=(images, labels))
view
# %% [markdown]
# The 100 hidden units are drawn as a 10×10 grid and the 10 outputs as labeled bars. Everything
# the view shows is available in Python: `view.activations` holds each layer's values for the
# current input, and `view.input` can be set from code.
# %%
view.input = images[labels == 7][0]
hidden = view.activations["sigmoid"]
print("hidden units as a 10x10 grid:\n", np.round(hidden.reshape(10, 10), 2))
print("predicted:", nbvis.demo.DIGIT_LABELS[int(view.activations["fc2"].argmax())])
# %% [markdown]
# ## Why does the network say "7"?
#
# Selecting a unit (click it, or set `view.selected`) shows the gradient of that unit with
# respect to the input: red pixels would raise the "7" logit if they were brighter, blue pixels
# would lower it. Choose *over* an earlier layer to see the gradient with respect to the hidden
# units instead (for this network: exactly the output weights of the "7" unit).
# %%
view.selected = ("fc2", 7)
print(view.grad_caption, view.gradient_map.shape)
view.wrt = "sigmoid"
print(np.allclose(view.gradient_map, model.fc2.weight[7].detach().numpy()))
view.wrt = "input"
# %% [markdown]
# ## A convolutional network: channel maps, receptive fields, guided backprop, top examples
#
# Conv layers are drawn as a grid of channel maps. Hover a channel to see it enlarged, and a
# position in it to outline, on the input, the region that position sees (its receptive field).
# For ReLU networks the *guided backprop* and *deconvnet* maps are often easier to read than the
# raw gradient.
# %%
cnn = nbvis.demo.digits_cnn()
cnn_view = nbvis.ActivationHeatmap(cnn, images[3], labels=nbvis.demo.DIGIT_LABELS, dataset=(images, labels), method="guided")
cnn_view.selected = ("conv2", 5)
cnn_view
# %% [markdown]
# Selecting a unit also scans the dataset for the inputs that activate it most (in the
# background, with a progress bar and a cancel button). For a conv channel each example is the
# patch under the receptive field of its strongest position.
# %%
cnn_view.top_job.wait()
top = cnn_view.top
print("dataset indices:", top.indices.tolist())
print("patch size:", tuple(top.patches.shape[2:]), "from boxes like", top.boxes[0].tolist())
# %% [markdown]
# ## The same computations without a widget
#
# Every map is a plain function of `nbvis` that returns tensors: `gradient` (of any unit with
# respect to the input or an earlier layer), `guided_backprop`, `deconvnet`, `loss_gradient` (how
# sensitive the loss is to each input value), `top_examples` and `receptive_field`.
# %%
from nbvis.compute.dataset import receptive_field

x = images[:4]
saliency = nbvis.gradient(cnn, x, of=("fc", 3))
guided = nbvis.guided_backprop(cnn, x, of=("conv2", (5, 3, 9)))  # one position of one channel
sensitivity = nbvis.loss_gradient(cnn, x, target=labels[:4])
print(saliency.shape, guided.shape, sensitivity.shape)
print("conv2 position (3, 9) sees input rows/cols", receptive_field(cnn, "conv2", (3, 9), (1, 28, 28)))
best = nbvis.top_examples(cnn, "fc", 3, images, k=5)
print("the five most '3'-like digits:", best.indices.tolist(), "labels", labels[best.indices].tolist())
# %% [markdown]
# ## Bad inputs are shown, not fatal
#
# A NaN or an infinite pixel is drawn in green and propagates through the layers; an input of the
# wrong shape is refused with a message under the view, which keeps the previous input.
# %%
broken = images[0].clone()
broken[0, 5:8, 5:8] = float("nan")
view.input = broken
print("hidden units that became NaN:", int(np.isnan(view.activations["sigmoid"]).sum()))
try:
    view.input = images[0, :, :20]
except ValueError as err:
    print("refused:", err)
view.input = images[0]
