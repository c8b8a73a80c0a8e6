"""Layers: `Module`, `Parameter`, `Sequential` and the layers VGG is built from, named as in PyTorch."""
import math

import numpy as np

from .. import backend
from .. import functional as F
from ..autograd import Function, Tensor, _HookHandle, no_grad
from . import init, utils


class Parameter(Tensor):
    """A tensor a Module learns: requires grad by default and is listed by `Module.parameters()`."""

    def __init__(self, data, requires_grad=True):
        super().__init__(data, requires_grad=requires_grad)

    @property
    def is_materialized(self):
        """False for the placeholder weight of a lazy layer before its first call."""
        return not getattr(self, "_lazy", False)

    def __repr__(self):
        if not self.is_materialized:
            return "Parameter(<uninitialized: shape set by the first call>)"
        return "Parameter containing:\n" + super().__repr__()


def _lazy_parameter():
    p = Parameter(np.empty(0, dtype=np.float32))
    p._lazy = True
    return p


class _PassGradient(Function):
    """Identity whose gradient a backward hook can watch (the gradient w.r.t. a module's input)."""

    def forward(self, x):
        return x

    def backward(self, gy):
        return gy


class Module:
    """Base class of every layer and network. Parameters and sub-modules assigned as attributes are
    registered in definition order, so `named_parameters()` and `state_dict()` are stable."""

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_forward_hooks", [])
        object.__setattr__(self, "_backward_hooks", [])
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def forward(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *inputs):
        if self._backward_hooks:
            inputs = tuple(_PassGradient()(x) if isinstance(x, Tensor) and x.requires_grad else x for x in inputs)
        output = self.forward(*inputs)
        for hook in list(self._forward_hooks):
            replaced = hook(self, inputs, output)
            if replaced is not None:
                output = replaced
        if self._backward_hooks and isinstance(output, Tensor) and output.requires_grad:
            self._watch_gradients(inputs, output)
        return output

    def _watch_gradients(self, inputs, output):
        """Call each backward hook with (module, grad_inputs, grad_outputs) once both are known."""
        watched = [x for x in inputs if isinstance(x, Tensor) and x.requires_grad]
        seen = {"out": None, "inputs": {}}

        def fire():
            grads_in = tuple(seen["inputs"].get(i) for i in range(len(watched)))
            for hook in list(self._backward_hooks):
                hook(self, grads_in, (seen["out"],))

        def on_output(grad):
            seen["out"] = grad
            if not watched:
                fire()

        def make_on_input(i):
            def on_input(grad):
                seen["inputs"][i] = grad
                if len(seen["inputs"]) == len(watched):
                    fire()
            return on_input

        output.register_hook(on_output)
        for i, x in enumerate(watched):
            x.register_hook(make_on_input(i))

    def register_forward_hook(self, fn):
        """`fn(module, inputs, output)` after every forward; a returned value replaces the output."""
        self._forward_hooks.append(fn)
        return _HookHandle(self._forward_hooks, fn)

    def register_backward_hook(self, fn):
        """`fn(module, grad_inputs, grad_outputs)` during backward, when the gradients w.r.t. the module's
        inputs and output are known (tuples of Tensors; None for inputs that need no gradient)."""
        self._backward_hooks.append(fn)
        return _HookHandle(self._backward_hooks, fn)

    # ---- traversal ----------------------------------------------------------------------------
    def named_children(self):
        return iter(self._modules.items())

    def children(self):
        return iter(self._modules.values())

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_parameters(self, prefix=""):
        """(dotted name, Parameter) in definition order, e.g. ('0.0.weight', ...)."""
        for name, p in self._parameters.items():
            yield (f"{prefix}.{name}" if prefix else name), p
        for name, child in self._modules.items():
            yield from child.named_parameters(f"{prefix}.{name}" if prefix else name)

    def parameters(self):
        return (p for _, p in self.named_parameters())

    def apply(self, fn):
        """Call fn(module) on every sub-module and then on self (PyTorch's order)."""
        for child in self._modules.values():
            child.apply(fn)
        fn(self)
        return self

    # ---- modes, devices, gradients --------------------------------------------------------------
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def to(self, device):
        """Move every parameter (and its gradient) to `device`, in place. Returns self."""
        for p in self.parameters():
            p.data = backend.to_device(p.data, device)
            if p.grad is not None:
                p.grad = Tensor(backend.to_device(p.grad.data, device))
        for m in self.modules():
            if isinstance(m, _Lazy):
                m.device = backend.canonical_device(device)
        return self

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def num_parameters(self):
        self._check_materialized("num_parameters")
        return int(sum(p.size for p in self.parameters()))

    def _check_materialized(self, what):
        lazy = [name for name, p in self.named_parameters() if not p.is_materialized]
        if lazy:
            raise RuntimeError(f"{what}: {', '.join(lazy)} belong to lazy layers not yet called; run one "
                               "forward pass first (e.g. net(x) or minivgg.summary(net, input_shape))")

    # ---- state ----------------------------------------------------------------------------------
    def state_dict(self):
        """{dotted name: array} for every parameter, in definition order (the arrays themselves)."""
        self._check_materialized("state_dict")
        return {name: p.data for name, p in self.named_parameters()}

    def load_state_dict(self, state):
        """Copy arrays (or Tensors) into the parameters, onto each parameter's device. Lazy layers take
        the stored shape. Raises naming every missing or unexpected key and every shape mismatch."""
        own = dict(self.named_parameters())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        problems = []
        if missing:
            problems.append(f"missing keys: {', '.join(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {', '.join(unexpected)}")
        for name, p in own.items():
            if name in state and p.is_materialized:
                shape = tuple(getattr(state[name], "shape", ()))
                if shape != p.shape:
                    problems.append(f"{name}: checkpoint has shape {shape}, the model has {p.shape}")
        if problems:
            raise KeyError(f"load_state_dict({type(self).__name__}): " + "; ".join(problems)
                           + ". Build the model with the same architecture as the one saved.")
        for name, p in own.items():
            value = state[name]
            value = value.data if isinstance(value, Tensor) else value
            device = p.device if p.is_materialized else getattr(self._owner_of(name), "device", "cpu")
            p.data = backend.to_device(backend.get_array_module(value).array(value, dtype=np.float32, copy=True),
                                       device)
            p._lazy = False
        return self

    def _owner_of(self, dotted):
        module = self
        for part in dotted.split(".")[:-1]:
            module = module._modules[part]
        return module

    # ---- printing -------------------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if not self._modules:
            return lines[0] + ")"
        for name, child in self._modules.items():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"


def call_layer(module, name, x):
    """module(x), with a shape error re-raised naming the layer (and, nested, the path to it)."""
    try:
        return module(x)
    except ValueError as exc:
        raise ValueError(f"{type(module).__name__} ({name}) cannot take input of shape {tuple(x.shape)}: "
                         f"{exc}") from None


class Sequential(Module):
    """Modules applied one after another. Iterable and indexable: `for blk in net: X = blk(X)`."""

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: item {i} is a {type(m).__name__}, not a Module")
            setattr(self, str(i), m)

    def forward(self, x):
        for name, m in self._modules.items():
            x = call_layer(m, name, x)
        return x

    def append(self, module):
        setattr(self, str(len(self._modules)), module)
        return self

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, index):
        items = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*items[index])
        return items[index]


class _Lazy:
    """Mixin of layers whose input size is read from the first input (LazyConv2d, LazyLinear)."""

    device = "cpu"

    def _materialize(self, shapes, device):
        """Give the placeholder parameters their shapes and default values on `device`."""
        for name, shape in shapes.items():
            p = self._parameters[name]
            p.data = backend.array_module_for(device).empty(shape, dtype=np.float32)
            p._lazy = False
        self.reset_parameters()


class Conv2d(Module):
    """2-D convolution: (N, in_channels, H, W) -> (N, out_channels, OH, OW). Weight (out, in, KH, KW).

    Default values as in PyTorch: weight and bias uniform in +-1/sqrt(fan_in)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = F._pair(kernel_size)
        self.stride, self.padding = F._pair(stride, "stride"), F._pair(padding, "padding")
        if in_channels is None:
            self.weight = _lazy_parameter()
            self.bias = _lazy_parameter() if bias else None
        else:
            self.weight = Parameter(np.empty((out_channels, in_channels) + self.kernel_size, dtype=np.float32))
            self.bias = Parameter(np.empty(out_channels, dtype=np.float32)) if bias else None
            self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(init.fans(self.weight)[0])
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}")


class LazyConv2d(_Lazy, Conv2d):
    """Conv2d whose in_channels is taken from the first input (D2L's choice)."""

    def __init__(self, out_channels, kernel_size, stride=1, padding=0, bias=True):
        Conv2d.__init__(self, None, out_channels, kernel_size, stride, padding, bias)

    def forward(self, x):
        if not self.weight.is_materialized:
            self.in_channels = x.shape[1]
            shapes = {"weight": (self.out_channels, self.in_channels) + self.kernel_size}
            if self.bias is not None:
                shapes["bias"] = (self.out_channels,)
            self._materialize(shapes, x.device)
        return Conv2d.forward(self, x)


class Linear(Module):
    """(N, in_features) -> (N, out_features); weight (out, in) as in PyTorch, default uniform +-1/sqrt(in)."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        if in_features is None:
            self.weight = _lazy_parameter()
            self.bias = _lazy_parameter() if bias else None
        else:
            self.weight = Parameter(np.empty((out_features, in_features), dtype=np.float32))
            self.bias = Parameter(np.empty(out_features, dtype=np.float32)) if bias else None
            self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.weight.shape[1])
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}"


class LazyLinear(_Lazy, Linear):
    """Linear whose in_features is taken from the first input (D2L's choice after Flatten)."""

    def __init__(self, out_features, bias=True):
        Linear.__init__(self, None, out_features, bias)

    def forward(self, x):
        if not self.weight.is_materialized:
            if x.ndim != 2:
                raise ValueError(f"LazyLinear: expected a 2-D input (N, features), got shape {x.shape}; "
                                 "put nn.Flatten() before it")
            self.in_features = x.shape[1]
            shapes = {"weight": (self.out_features, self.in_features)}
            if self.bias is not None:
                shapes["bias"] = (self.out_features,)
            self._materialize(shapes, x.device)
        return Linear.forward(self, x)


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class MaxPool2d(Module):
    """Max over kernel-sized windows; stride defaults to kernel_size."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, padding={self.padding}"


class Dropout(Module):
    """Inverted dropout in training mode, identity after `.eval()`."""

    def __init__(self, p=0.5):
        super().__init__()
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Flatten(Module):
    """(N, C, H, W) -> (N, C*H*W)."""

    def forward(self, x):
        return F.flatten(x, 1)


class LocalResponseNorm(Module):
    """Cross-channel normalization of AlexNet, used by the paper's configuration A-LRN."""

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=2.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x):
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class GlobalAvgPool2d(Module):
    """(N, C, H, W) -> (N, C, 1, 1): the mean of each channel's map (the paper's dense evaluation)."""

    def forward(self, x):
        return x.mean(axis=(2, 3), keepdims=True)


__all__ = ["Module", "Parameter", "Sequential", "Conv2d", "LazyConv2d", "Linear", "LazyLinear", "ReLU",
           "MaxPool2d", "Dropout", "Flatten", "LocalResponseNorm", "GlobalAvgPool2d", "init", "utils", "no_grad"]
