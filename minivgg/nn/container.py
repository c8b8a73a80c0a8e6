"""`Sequential`, `ModuleList`, and `call_layer`, which names the layer a shape error comes from."""
from .module import Module


def call_layer(module, name, x):
    """module(x), with a shape error re-raised naming the layer (and, nested, the path to it)."""
    try:
        return module(x)
    except ValueError as exc:
        raise ValueError(f"{type(module).__name__} ({name}) cannot take input of shape {tuple(x.shape)}: "
                         f"{exc}") from None


class _ModuleSequence(Module):
    """What Sequential and ModuleList share: modules kept in order under the names '0', '1', ..., iterable,
    indexable (a slice gives the same kind of container) and replaceable in place."""

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}: module {len(self._modules)} must be a Module, got {module!r} "
                            f"({type(module).__name__})")
        setattr(self, str(len(self._modules)), module)
        return self

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, index):
        items = list(self._modules.values())
        return type(self)._of(items[index]) if isinstance(index, slice) else items[index]

    def __setitem__(self, index, module):
        """net[-1] = nn.Linear(4096, 5): replace one module in place (its name stays), as in PyTorch."""
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}: can only hold Modules, got a {type(module).__name__}")
        setattr(self, list(self._modules)[index], module)


class Sequential(_ModuleSequence):
    """Modules applied one after another. Iterable and indexable: `for blk in net: X = blk(X)`."""

    def __init__(self, *modules):
        super().__init__()
        for m in modules:
            self.append(m)

    @classmethod
    def _of(cls, items):
        return cls(*items)

    def forward(self, x):
        for name, m in self._modules.items():
            x = call_layer(m, name, x)
        return x


class ModuleList(_ModuleSequence):
    """A list of modules whose parameters the owner learns (a plain list's would be missed by parameters(),
    to() and state_dict()). It has no forward: the owner calls its modules as it wants."""

    def __init__(self, modules=()):
        super().__init__()
        self.extend(modules)

    @classmethod
    def _of(cls, items):
        return cls(items)

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self
