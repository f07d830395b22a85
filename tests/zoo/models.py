"""A zoo of real architectures nobody here wrote: Hugging Face ``transformers`` models from tiny
configs (random weights, no download), a torchvision-style ResNet, and Captum's own test models.

Each :class:`Case` says how to feed the model and which middle unit to ask about, with an
independent way to read that unit (a selector on the layer's output, as Captum's neuron
selectors take it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from torch import nn


@dataclass
class Case:
    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[], torch.Tensor]  # a batch of samples (the dataset of the views)
    mid: tuple  # (layer, int unit): a middle unit
    select: Callable[[torch.Tensor], torch.Tensor]  # the same unit from the layer's output, (N,)
    element: tuple = ()  # one element of the middle layer (Captum's neuron form)
    target: object = 0  # an output index for Captum (an int, or a tuple for sequence outputs)
    conv: Optional[str] = None  # a conv layer for WeightGrid
    linear: Optional[str] = None  # a Linear layer for WeightGrid
    relu: bool = False  # ReLUs run: guided backprop and deconvnet apply
    tokens: bool = False  # the input is token ids
    wrt: Optional[str] = None  # an earlier layer to take gradients with respect to
    extra: dict = field(default_factory=dict)


def seeded(fn):
    def build():
        torch.manual_seed(0)
        return fn()

    return build


# ------------------------------------------------------------------------------- a torchvision-style ResNet


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: one ReLU(inplace=True) used twice, ``out += identity``."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class TinyResNet(nn.Module):
    def __init__(self, classes=5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 12, stride=2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, classes)
        for m in self.modules():  # running statistics that differ from the defaults
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.data.uniform_(0.5, 1.5)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def images(n=6, channels=3, size=16):
    def make():
        return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(1))

    return make


def ids(n=6, length=5, vocab=50):
    def make():
        return torch.randint(1, vocab, (n, length), generator=torch.Generator().manual_seed(1))

    return make


def channel(unit):
    return lambda out: out[:, unit].flatten(1).mean(1)


def feature(unit):
    return lambda out: out[..., unit].flatten(1).mean(1)


# ------------------------------------------------------------------------------- transformers


def hf(name, config_kwargs, model_class):
    def build():
        import transformers

        torch.manual_seed(0)
        config = getattr(transformers, name)(**config_kwargs)
        return getattr(transformers, model_class)(config).eval()

    return build


CASES = [
    Case("torchvision-resnet", seeded(TinyResNet), images(), ("layer1.0.relu#2", 3), channel(3), (3, 2, 5),
         target=1, conv="layer1.0.conv1", linear="fc", relu=True, wrt="layer1.0.conv2"),
    Case("hf-resnet",
         hf("ResNetConfig", dict(num_channels=3, embedding_size=8, hidden_sizes=[8, 12], depths=[1, 1],
                                  layer_type="basic", num_labels=3), "ResNetForImageClassification"),
         images(size=32), ("resnet.encoder.stages.0.layers.0.activation", 2), channel(2), (2, 3, 1),
         target=2, conv="resnet.encoder.stages.0.layers.0.layer.0.convolution", linear="classifier.1", relu=True,
         wrt="resnet.embedder"),
    Case("hf-convnext",
         hf("ConvNextConfig", dict(num_channels=3, hidden_sizes=[8, 12], depths=[1, 1], num_stages=2, num_labels=3),
            "ConvNextForImageClassification"),
         images(size=32), ("convnext.encoder.stages.0.layers.0.pwconv1", 5), feature(5), (1, 2, 5),
         target=1, conv="convnext.encoder.stages.0.layers.0.dwconv", linear="convnext.encoder.stages.0.layers.0.pwconv1",
         wrt="convnext.embeddings"),
    Case("hf-vit",
         hf("ViTConfig", dict(image_size=16, patch_size=4, num_channels=3, hidden_size=16, num_hidden_layers=2,
                              num_attention_heads=2, intermediate_size=32, num_labels=3), "ViTForImageClassification"),
         images(size=16), ("vit.layers.0.mlp.fc1", 7), feature(7), (3, 7),
         target=0, conv="vit.embeddings.patch_embeddings.projection", linear="classifier", wrt="vit.embeddings"),
    Case("hf-mobilenetv2",
         hf("MobileNetV2Config", dict(num_channels=3, image_size=32, depth_multiplier=0.25, num_labels=3),
            "MobileNetV2ForImageClassification"),
         images(size=32), ("mobilenet_v2.layer.0.expand_1x1.activation", 4), channel(4), (4, 2, 2),
         target=1, conv="mobilenet_v2.conv_stem.first_conv.convolution", linear="classifier", wrt="mobilenet_v2.conv_stem"),
    Case("hf-bert",
         hf("BertConfig", dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=16, num_labels=3),
            "BertForSequenceClassification"),
         ids(), ("bert.encoder.layer.0.intermediate.dense", 9), feature(9), (2, 9),
         target=2, linear="bert.encoder.layer.0.intermediate.dense", tokens=True, wrt="bert.embeddings.LayerNorm"),
    Case("hf-gpt2",
         hf("GPT2Config", dict(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=16, bos_token_id=0,
                               eos_token_id=0), "GPT2LMHeadModel"),
         ids(), ("transformer.h.0.mlp.c_fc", 11), feature(11), (1, 11),
         target=(4, 7), linear="lm_head", tokens=True, wrt="transformer.h.0.ln_1"),
]


# ------------------------------------------------------------------------------- captum's test models
# Every model of captum.testing.helpers.basic_models whose forward takes one tensor, except
# BasicModel_GradientLayerAttribution (it builds a new random nn.Linear in each forward pass, so
# no two passes agree) and the models without a layer to name (BasicModel, BasicModel_MaxPool_ReLU,
# covered below by output-only checks).


def captum_model(name, *args, **kwargs):
    def build():
        from captum.testing.helpers import basic_models

        torch.manual_seed(0)
        return getattr(basic_models, name)(*args, **kwargs).eval()

    return build


def rand(*shape):
    return lambda: torch.randn(*shape, generator=torch.Generator().manual_seed(2))


CASES += [
    Case("captum-BasicLinearModel2", captum_model("BasicLinearModel2", 5, 4), rand(6, 5), ("linear", 2), lambda o: o[:, 2],
         (2,), target=1, linear="linear"),
    Case("captum-BasicLinearModel_Multilayer", captum_model("BasicLinearModel_Multilayer", 5, 6, 3), rand(6, 5),
         ("linear1", 4), lambda o: o[:, 4], (4,), target=2, linear="linear2", wrt="linear1"),
    Case("captum-BasicLinearReLULinear", captum_model("BasicLinearReLULinear", 4), rand(6, 4), ("relu1", 3),
         lambda o: o[:, 3], (3,), target=0, linear="fc1", relu=True, wrt="fc1"),
    Case("captum-BasicModelWithReusedLinear", captum_model("BasicModelWithReusedLinear"), rand(6, 3), ("lin1#2", 1),
         lambda o: o[:, 1], (1,), target=2, linear="lin1", relu=True, wrt="lin1"),
    Case("captum-BasicModelWithReusedModules", captum_model("BasicModelWithReusedModules"), rand(6, 3), ("relu#2", 1),
         lambda o: o[:, 1], (1,), target=1, linear="lin2", relu=True, wrt="lin1"),
    Case("captum-BasicModel_ConvNet", captum_model("BasicModel_ConvNet"), rand(6, 1, 10, 10), ("relu2", 3),
         channel(3), (3, 1, 1), target=4, conv="conv2", linear="fc1", relu=True, wrt="pool1"),
    Case("captum-BasicModel_ConvNetWithPaddingDilation", captum_model("BasicModel_ConvNetWithPaddingDilation", inplace=True),
         rand(6, 1, 6, 6), ("conv1", 1), channel(1), (1, 2, 3), target=3, conv="conv1", linear="fc1", relu=True),
    Case("captum-BasicModel_ConvNet_MaxPool1d", captum_model("BasicModel_ConvNet_MaxPool1d"), rand(6, 1, 10),
         ("relu2", 2), channel(2), (2, 1), target=3, conv="conv2", linear="fc1", relu=True, wrt="conv1"),
    Case("captum-BasicModel_ConvNet_MaxPool3d", captum_model("BasicModel_ConvNet_MaxPool3d"), rand(6, 1, 10, 10, 10),
         ("relu2", 1), channel(1), (1, 1, 0, 1), target=2, linear="fc1", relu=True, wrt="pool1"),
    Case("captum-BasicModel_MultiLayer", captum_model("BasicModel_MultiLayer", inplace=True), rand(6, 3),
         ("linear1", 2), lambda o: o[:, 2], (2,), target=1, linear="linear1", relu=True, wrt="linear0"),
    Case("captum-Conv1dSeqModel", captum_model("Conv1dSeqModel"), rand(4, 4, 1000), ("seq.0", 1),
         channel(1), (1, 500), target=(1, 0), conv="seq.0", relu=True),
    Case("captum-SimpleLRPModel", captum_model("SimpleLRPModel", inplace=True), rand(6, 3), ("linear", 1),
         lambda o: o[:, 1], (1,), target=0, linear="linear", relu=True),
]

IDS = [case.name for case in CASES]
