"""Models written by other people, for the porting tests.

- ``TorchResNet``: torchvision's ResNet-18 architecture (torchvision/models/resnet.py:
  ``BasicBlock``, ``ResNet._make_layer``, ``conv3x3`` / ``conv1x1``, the stem conv 7x7/2
  padding 3 + MaxPool2d(3, 2, padding=1), AdaptiveAvgPool2d, fc; weights initialised as
  torchvision does), written out here because torchvision's CPU build is not installable in
  this environment. ``width`` scales the channels (torchvision: 64); the architecture is
  unchanged.
- ``LinenResNet``: the Linen ResNet of flax/examples/imagenet/models.py (``ResNetBlock``
  with auto-named convs and norms, ``conv_init``/``bn_init`` stem, ``conv_proj``/``norm_proj``
  shortcut, ``Dense`` head), with torch's explicit paddings and ``jaxinit.BatchNorm`` (torch
  conventions), so it is an exact twin; ``trap=`` puts one deliberate porting error deep
  inside (``'same_padding'``: Flax's default ``padding='SAME'`` on layer3's stride-2 conv;
  ``'flax_batchnorm'``: Flax's BatchNorm conventions in layer3.1's first norm).
- ``TorchMixer`` / ``LinenMixer``: small blocks Linear -> LayerNorm -> GELU -> Linear with
  a residual, for LayerNorm eps and GELU traps in block 1.
"""
from __future__ import annotations

from functools import partial

import jax.numpy as jnp
import torch
from flax import linen as nn

import jaxinit


# --------------------------------------------------------------------------- torchvision ResNet-18
def conv3x3(in_planes, out_planes, stride=1):
    return torch.nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes, out_planes, stride=1):
    return torch.nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(torch.nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = torch.nn.BatchNorm2d(planes)
        self.relu = torch.nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = torch.nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class TorchResNet(torch.nn.Module):
    def __init__(self, layers=(2, 2, 2, 2), num_classes=10, width=64):
        super().__init__()
        self.inplanes = width
        self.conv1 = torch.nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(self.inplanes)
        self.relu = torch.nn.ReLU(inplace=True)
        self.maxpool = torch.nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(2 * width, layers[1], stride=2)
        self.layer3 = self._make_layer(4 * width, layers[2], stride=2)
        self.layer4 = self._make_layer(8 * width, layers[3], stride=2)
        self.avgpool = torch.nn.AdaptiveAvgPool2d((1, 1))
        self.fc = torch.nn.Linear(8 * width, num_classes)
        for m in self.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, torch.nn.BatchNorm2d):
                torch.nn.init.constant_(m.weight, 1)
                torch.nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = torch.nn.Sequential(conv1x1(self.inplanes, planes, stride), torch.nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return torch.nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# --------------------------------------------------------------------------- flax examples ResNet
PAD1 = ((1, 1), (1, 1))


class ResNetBlock(nn.Module):
    filters: int
    conv: nn.Module
    norm: nn.Module
    strides: tuple = (1, 1)
    trap: str | None = None

    @nn.compact
    def __call__(self, x):
        residual = x
        first_pad = "SAME" if self.trap == "same_padding" else PAD1  # flax examples: padding defaults to 'SAME'
        y = self.conv(self.filters, (3, 3), self.strides, padding=first_pad)(x)
        y = (self.norm.func.from_convention("flax", **self.norm.keywords) if self.trap == "flax_batchnorm"
             else self.norm())(y)
        y = nn.relu(y)
        y = self.conv(self.filters, (3, 3), padding=PAD1)(y)
        y = self.norm()(y)
        if residual.shape != y.shape:
            residual = self.conv(self.filters, (1, 1), self.strides, name="conv_proj")(residual)
            residual = self.norm(name="norm_proj")(residual)
        return nn.relu(residual + y)


class LinenResNet(nn.Module):
    stage_sizes: tuple = (2, 2, 2, 2)
    num_classes: int = 10
    num_filters: int = 64
    dtype: jnp.dtype = jnp.float32
    trap: str | None = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        conv = partial(nn.Conv, use_bias=False, param_dtype=self.dtype)
        norm = partial(jaxinit.BatchNorm, use_running_average=not train, param_dtype=self.dtype)
        x = conv(self.num_filters, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], name="conv_init")(x)
        x = nn.relu(norm(name="bn_init")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=PAD1)  # flax examples: 'SAME'
        for i, block_size in enumerate(self.stage_sizes):
            for j in range(block_size):
                strides = (2, 2) if i > 0 and j == 0 else (1, 1)
                trap = {"same_padding": (2, 0), "flax_batchnorm": (2, 1)}.get(self.trap)
                x = ResNetBlock(self.num_filters * 2 ** i, conv=conv, norm=norm, strides=strides,
                                trap=self.trap if trap == (i, j) else None)(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, param_dtype=self.dtype)(x)


# --------------------------------------------------------------------------- LayerNorm / GELU blocks
class TorchMixerBlock(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc1, self.norm, self.act, self.fc2 = (torch.nn.Linear(d, 2 * d), torch.nn.LayerNorm(2 * d),
                                                  torch.nn.GELU(), torch.nn.Linear(2 * d, d))

    def forward(self, x):
        return x + self.fc2(self.act(self.norm(self.fc1(x))))


class TorchMixer(torch.nn.Module):
    def __init__(self, d=8, depth=3):
        super().__init__()
        self.blocks = torch.nn.Sequential(*[TorchMixerBlock(d) for _ in range(depth)])
        self.head = torch.nn.Linear(d, 3)

    def forward(self, x):
        return self.head(self.blocks(x))


class LinenMixerBlock(nn.Module):
    d: int
    eps: float = 1e-5
    approximate: bool = False

    @nn.compact
    def __call__(self, x):
        y = nn.LayerNorm(epsilon=self.eps, param_dtype=jnp.float64, name="norm")(
            nn.Dense(2 * self.d, param_dtype=jnp.float64, name="fc1")(x))
        return x + nn.Dense(self.d, param_dtype=jnp.float64, name="fc2")(nn.gelu(y, approximate=self.approximate))


class LinenMixerStack(nn.Module):  # names layers_0.. as Linen's nn.Sequential does
    d: int
    depth: int
    trap: str | None

    @nn.compact
    def __call__(self, x):
        for i in range(self.depth):
            kw = {}
            if i == 1 and self.trap == "layernorm_eps":
                kw["eps"] = 1e-6
            if i == 1 and self.trap == "gelu":
                kw["approximate"] = True
            x = LinenMixerBlock(self.d, name=f"layers_{i}", **kw)(x)
        return x


class LinenMixer(nn.Module):
    d: int = 8
    depth: int = 3
    trap: str | None = None  # 'layernorm_eps' (Flax's default 1e-6) or 'gelu' (Flax's default tanh) in block 1

    @nn.compact
    def __call__(self, x):
        x = LinenMixerStack(self.d, self.depth, self.trap, name="blocks")(x)
        return nn.Dense(3, param_dtype=jnp.float64, name="head")(x)
