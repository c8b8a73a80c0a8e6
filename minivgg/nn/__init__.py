"""Layers, named and laid out as in PyTorch's `torch.nn`; every name below is importable from here.

module: Module, Parameter.  container: Sequential, ModuleList, call_layer.  conv: Conv2d, LazyConv2d.
linear: Linear, LazyLinear, Flatten, Identity.  pooling: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d,
GlobalAvgPool2d.  activation: ReLU, Sigmoid, Tanh, Softmax.  dropout: Dropout.  normalization:
LocalResponseNorm.  loss: CrossEntropyLoss, BCEWithLogitsLoss, MSELoss.  lazy: what the lazy layers share.
init: weight initializers.  functional: torch.nn.functional's names for the kernels.
utils: device_of, evaluating, leaf_modules, clip_grad_norm_.
"""
from ..autograd import no_grad
from . import functional, init, utils
from .activation import ReLU, Sigmoid, Softmax, Tanh
from .container import ModuleList, Sequential, call_layer
from .conv import Conv2d, LazyConv2d
from .dropout import Dropout
from .linear import Flatten, Identity, LazyLinear, Linear
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .module import Module, Parameter
from .normalization import LocalResponseNorm
from .pooling import AdaptiveAvgPool2d, AvgPool2d, GlobalAvgPool2d, MaxPool2d

__all__ = ["Module", "Parameter", "Sequential", "ModuleList", "Conv2d", "LazyConv2d", "Linear", "LazyLinear",
           "Identity", "ReLU", "Sigmoid", "Tanh", "Softmax", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
           "Dropout", "Flatten", "LocalResponseNorm", "GlobalAvgPool2d", "CrossEntropyLoss", "BCEWithLogitsLoss",
           "MSELoss", "functional", "init", "utils", "no_grad"]
