"""`Module`, the base class of every layer and network, and `Parameter`, the tensor a Module learns."""
from collections import OrderedDict

import numpy as np

from .. import backend
from ..autograd import Function, Tensor, _HookHandle
from .utils import check_materialized


class Parameter(Tensor):
    """A tensor a Module learns: requires grad by default and is listed by `Module.parameters()`.

    `data` is an array, or a Tensor (a Parameter too) whose array the Parameter then shares, as
    `nn.Parameter(t)` shares t's storage in PyTorch. It starts a new leaf: no graph comes along."""

    def __init__(self, data, requires_grad=True):
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad=requires_grad)
        if isinstance(data, Tensor):  # one array, one count of its in-place changes
            self._version_counter = data._version_counter

    @property
    def is_materialized(self):
        """False for the placeholder weight of a lazy layer before its first call."""
        return not getattr(self, "_lazy", False)

    def __repr__(self):
        if not self.is_materialized:
            return "Parameter(<uninitialized: shape set by the first call>)"
        return "Parameter containing:\n" + super().__repr__()


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
        # an attribute replaced by one of its kind keeps its place (the order of parameters() and state_dict())
        if not isinstance(value, Parameter):
            self._parameters.pop(name, None)
        if not isinstance(value, Module):
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

    def named_parameters(self, prefix="", recurse=True):
        """(dotted name, Parameter) in definition order, e.g. ('0.0.weight', ...); with recurse=False only
        this module's own parameters."""
        for name, p in self._parameters.items():
            yield (f"{prefix}.{name}" if prefix else name), p
        if recurse:
            for name, child in self._modules.items():
                yield from child.named_parameters(f"{prefix}.{name}" if prefix else name)

    def parameters(self, recurse=True):
        return (p for _, p in self.named_parameters(recurse=recurse))

    def get_submodule(self, target):
        """The sub-module at the dotted path `target` ('' is self), e.g. net.get_submodule('0.2')."""
        module = self
        for part in target.split(".") if target else []:
            if part not in module._modules:
                raise AttributeError(f"{type(module).__name__} has no sub-module {part!r} (looking up {target!r})")
            module = module._modules[part]
        return module

    def get_parameter(self, target):
        """The parameter at the dotted path `target`, e.g. net.get_parameter('0.0.weight')."""
        owner, _, name = target.rpartition(".")
        module = self.get_submodule(owner)
        if name not in module._parameters:
            raise AttributeError(f"{type(module).__name__} has no parameter {name!r} (looking up {target!r})")
        return module._parameters[name]

    def add_module(self, name, module):
        """Register `module` as the child `name` (as assigning the attribute does); None removes it."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {type(module).__name__} is not a Module")
        setattr(self, str(name), module)

    register_module = add_module

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
        """Move every parameter (and its gradient) to `device`, in place. Returns self.

        Recursive, so that a sub-module that keeps more on a device than its parameters (a lazy layer)
        can extend it."""
        for p in self._parameters.values():
            p.data = backend.to_device(p.data, device)
            if p.grad is not None:
                p.grad = Tensor(backend.to_device(p.grad.data, device))
        for child in self._modules.values():
            child.to(device)
        return self

    def requires_grad_(self, requires_grad=True):
        """Freeze (False) or unfreeze (True) every parameter of this module and its sub-modules. Returns self,
        so `net[0].requires_grad_(False)` reads as in PyTorch.

        A frozen parameter is no graph input that needs a gradient: ops neither compute its gradient nor
        keep the arrays only that gradient needs (a convolution with a frozen weight keeps no im2col
        matrix), the backward walk stops where nothing below needs a gradient, and the optimizers skip
        it, weight decay included."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        """Forget every parameter's gradient (`.grad = None`), or with set_to_none=False fill each existing
        gradient with zeros in place, as PyTorch does."""
        for p in self.parameters():
            p.zero_grad(set_to_none)

    def num_parameters(self):
        self._check_materialized("num_parameters")
        return int(sum(p.numel() for p in self.parameters()))

    def _check_materialized(self, what):
        check_materialized(self, what)

    # ---- state ----------------------------------------------------------------------------------
    def state_dict(self):
        """OrderedDict {dotted name: Tensor} for every parameter, in definition order, as PyTorch's. Each
        Tensor is cut from the graph but shares the parameter's array (a later step shows in it); pass
        the dict to `minivgg.save`, which copies the arrays to the file."""
        self._check_materialized("state_dict")
        return OrderedDict((name, Tensor(p.data)) for name, p in self.named_parameters())

    def load_state_dict(self, state):
        """Copy arrays (or Tensors) into the parameters, onto each parameter's device. Lazy layers take
        the stored shape. Raises naming every missing or unexpected key and every shape mismatch."""
        own = dict(self.named_parameters())
        problems = key_problems(own, state)
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
            owner = self.get_submodule(name.rpartition(".")[0])
            device = p.device if p.is_materialized else getattr(owner, "device", "cpu")
            p.data = backend.to_device(backend.get_array_module(value).array(value, dtype=np.float32, copy=True),
                                       device)
            p._lazy = False
        return self

    # ---- printing -------------------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        """PyTorch's layout: `Name(extra_repr)`, or, with sub-modules, one line per extra_repr line and per
        `(name): child`, indented by two spaces inside `Name(` ... `)`."""
        name, extra = type(self).__name__, self.extra_repr()
        lines = (extra.split("\n") if extra else []) + [
            f"({key}): " + repr(child).replace("\n", "\n  ") for key, child in self._modules.items()]
        if not self._modules and len(lines) <= 1:
            return f"{name}({extra})"
        return f"{name}(\n  " + "\n  ".join(lines) + "\n)"


def key_problems(expected, given, unexpected_hint=""):
    """['missing keys: ...', 'unexpected keys: ...'] for the keys of a state dict `given` against the
    `expected` ones (empty when they agree); `unexpected_hint` is appended to the unexpected keys."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    problems = [f"missing keys: {', '.join(missing)}"] if missing else []
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected)}{unexpected_hint}")
    return problems
