"""Layers, named and laid out as in PyTorch's `torch.nn`; every name below is importable from here.

module: Module, Parameter.  container: Sequential, call_layer.  conv: Conv2d, LazyConv2d.
linear: Linear, LazyLinear, Flatten.  pooling: MaxPool2d, GlobalAvgPool2d.  activation: ReLU.
dropout: Dropout.  normalization: LocalResponseNorm.  loss: CrossEntropyLoss, BCEWithLogitsLoss.
lazy: what the lazy layers share.  init: weight initializers.
utils: device_of, evaluating, leaf_modules, clip_grad_norm_.
"""
from ..autograd import no_grad
from . import init, utils
from .activation import ReLU
from .container import Sequential, call_layer
from .conv import Conv2d, LazyConv2d
from .dropout import Dropout
from .linear import Flatten, LazyLinear, Linear
from .loss import BCEWithLogitsLoss, CrossEntropyLoss
from .module import Module, Parameter
from .normalization import LocalResponseNorm
from .pooling import GlobalAvgPool2d, MaxPool2d

__all__ = ["Module", "Parameter", "Sequential", "Conv2d", "LazyConv2d", "Linear", "LazyLinear", "ReLU",
           "MaxPool2d", "Dropout", "Flatten", "LocalResponseNorm", "GlobalAvgPool2d", "CrossEntropyLoss",
           "BCEWithLogitsLoss", "init", "utils", "no_grad"]
