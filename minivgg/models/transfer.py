"""Transfer learning: torchvision's ImageNet weights (`load_torchvision_weights`), `freeze_features` before
fine-tuning a new head, and the paper's warm start of a deeper configuration (`init_from`)."""
import os
import zipfile
import zlib

import numpy as np

from .. import backend, nn
from ..autograd import Tensor, no_grad
from ..nn.module import key_problems
from ..nn.utils import check_materialized, leaf_modules


def _torchvision_names(net):
    """{torchvision key: (minivgg parameter name, Parameter)} for a VGG built here.

    torchvision's VGG is two flat Sequentials, `features` (Conv2d, ReLU, MaxPool2d, ...) and `classifier`
    (Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear), with an average pooling between them that is
    the identity at 224x224. The leaf layers of vgg_from_config's blocks and dense head come in the same
    order, so a leaf's position before the Flatten is its `features` index and after it its
    `classifier` index."""
    leaves = leaf_modules(net)
    flatten_at = next((i for i, (_, m) in enumerate(leaves) if isinstance(m, nn.Flatten)), None)
    if flatten_at is None:
        raise ValueError("load_torchvision_weights: the network has no Flatten layer between its convolutional "
                         "part and its dense part; build it with models.vgg_from_config")
    names = {}
    for i, (name, m) in enumerate(leaves):
        prefix = f"features.{i}" if i < flatten_at else f"classifier.{i - flatten_at - 1}"
        for pname, p in m.named_parameters(recurse=False):
            names[f"{prefix}.{pname}"] = (f"{name}.{pname}", p)
    return names


_TO_NPZ = ("python -c \"import torch, numpy; sd = torch.load('vgg16-397923af.pth'); "
           "numpy.savez('vgg16.npz', **{k: v.numpy() for k, v in sd.items()})\"")


def _why(exc):
    """The first line of an exception's message, or its type's name."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _read_state(state_dict_or_path):
    """A dict {key: NumPy array} from a dict (of arrays, minivgg Tensors or torch tensors), a .npz file or
    a .pth file (read through PyTorch)."""
    source = state_dict_or_path
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise FileNotFoundError(f"load_torchvision_weights: no file at {path!r}")
        if path.endswith(".npz"):
            try:
                with np.load(path, allow_pickle=False) as data:
                    source = {k: data[k] for k in data.files}  # reads every entry: a damaged one fails here
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError) as exc:
                raise ValueError(f"load_torchvision_weights: {path} is not a complete .npz of weights ({_why(exc)}): "
                                 f"convert torchvision's .pth to .npz again: {_TO_NPZ}") from None
        else:
            try:
                import torch
            except ImportError:
                raise ImportError(f"load_torchvision_weights: reading {path!r} needs PyTorch (pip install torch). "
                                  f"Without it, convert the file to .npz on a machine that has it: {_TO_NPZ}") \
                    from None
            try:
                source = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # torch's own words would advise weights_only=False: never run a file's code
                raise ValueError(f"load_torchvision_weights: {path} is not a file of weights PyTorch reads without "
                                 f"running code from it ({type(exc).__name__}): give torchvision's state dict "
                                 f"(such as vgg16-397923af.pth from download.pytorch.org) or an .npz converted "
                                 f"from it") from None
    if hasattr(source, "state_dict") and not isinstance(source, dict):  # a whole torch or minivgg model
        source = source.state_dict()
    if not isinstance(source, dict):
        raise TypeError(f"load_torchvision_weights: expected a state dict or a path, got {type(source).__name__}")
    arrays = {}
    for key, value in source.items():
        if isinstance(value, Tensor):
            value = backend.to_numpy(value.data)
        elif type(value).__module__.startswith("torch"):  # a torch tensor, without importing torch here
            value = value.detach().cpu().numpy()
        arrays[key] = np.asarray(value)
    return arrays


def _first_shape_mismatch(net, names, state):
    """The message for the first stored weight whose shape the model's parameter cannot take, or None."""
    for key, (name, p) in names.items():
        if key not in state:
            continue
        stored = tuple(state[key].shape)
        if p.is_materialized:
            fits, expected = stored == p.shape, p.shape
        else:  # a lazy layer not yet called knows its output size only
            layer = net.get_submodule(name.rpartition(".")[0])
            out = getattr(layer, "out_features", None) or layer.out_channels
            fits, expected = len(stored) >= 1 and stored[0] == out, f"({out}, ...)"
        if not fits:
            return (f"first shape mismatch: {key} has shape {stored} in the weights, but the model's {name} has "
                    f"{expected}")
    return None


def load_torchvision_weights(net, state_dict_or_path, head=True):
    """Load a torchvision VGG state dict (vgg11/13/16/19 without batch norm: keys `features.N.weight`,
    `features.N.bias`, `classifier.0/3/6.weight|bias`) into `net`, a `vgg_from_config` network of
    configuration A, B, D or E respectively. Returns net.

    `state_dict_or_path`: a dict of NumPy arrays, minivgg Tensors or torch tensors; a `.pth` file (read with
    PyTorch, which must then be installed) or a `.npz` file holding the same keys. Every key and shape is
    checked before anything is copied; an error names the missing and unexpected keys and the first key
    whose shape differs. Lazy dense layers take the stored shapes (25088 = 512x7x7 inputs: 224x224 images).
    head=False leaves net's last dense layer as it is (a new head for other classes, to fine-tune) and
    ignores the weights' own (ImageNet's 1000 classes).
    """
    state = _read_state(state_dict_or_path)
    names = _torchvision_names(net)
    if not head:
        last = max((k for k in names if k.startswith("classifier.")), key=lambda k: int(k.split(".")[1]))
        prefix = last.rsplit(".", 1)[0] + "."
        names = {k: v for k, v in names.items() if not k.startswith(prefix)}
        state = {k: v for k, v in state.items() if not k.startswith(prefix)}
    batch_norm = any(k.endswith(("running_mean", "running_var")) for k in state if k not in names)
    problems = key_problems(names, state, " (batch-norm variants such as vgg16_bn are not supported)"
                            if batch_norm else "")
    mismatch = _first_shape_mismatch(net, names, state)
    if mismatch:
        problems.append(mismatch)
    if problems:
        raise ValueError("load_torchvision_weights: " + "; ".join(problems) + ". Build the network with "
                         "models.vgg_from_config and the configuration the weights were trained for "
                         "(vgg11: A, vgg13: B, vgg16: D, vgg19: E)" + (" and num_classes=1000." if head else
                                                                         ", at 224x224 inputs."))
    # Copy into the parameters already there, so an optimizer built before still holds them.
    converted = {name: state[key] for key, (name, _) in names.items()}
    converted.update({name: Tensor(p.data) for name, p in net.named_parameters() if name not in converted})
    net.load_state_dict(converted)
    for m in net.modules():  # a lazy layer loaded before its first call learns its input size here
        if isinstance(m, nn.Linear) and m.in_features is None:
            m.in_features = m.weight.shape[1]
        elif isinstance(m, nn.Conv2d) and m.in_channels is None:
            m.in_channels = m.weight.shape[1]
    return net


def freeze_features(net):
    """Freeze (`requires_grad_(False)`) the convolutional part of a VGG: every layer before its Flatten, as the
    Keras walk-through does before it fine-tunes a new dense head. Returns the names of the layers frozen."""
    children = dict(net.named_children())
    names = list(children)
    flatten = [name for name in names if isinstance(children[name], nn.Flatten)]
    if not flatten:
        raise ValueError("freeze_features: the network has no Flatten layer between its convolutional part and "
                         "its dense part; build it with models.vgg or models.vgg_from_config")
    frozen = names[:names.index(flatten[0])]
    for name in frozen:
        children[name].requires_grad_(False)
    return frozen


def _places(net, kind):
    """[(place, name, layer)] of the `kind` layers of net in forward order; a layer's place is (the name of
    the module holding it, its position among the `kind` layers there): (block, k-th convolution in the
    block) for a convolution, ('', k-th dense layer) for a dense one."""
    counts, places = {}, []
    for parent_name, parent in net.named_modules():
        for child_name, child in parent.named_children():
            if isinstance(child, kind):
                position = counts.get(parent_name, 0)
                counts[parent_name] = position + 1
                name = f"{parent_name}.{child_name}" if parent_name else child_name
                places.append(((parent_name, position), name, child))
    return places


def init_from(source, target, convs=4):
    """Warm start, as in the paper (Sec. 3.1): copy into `target` the weights and biases of `source`'s first
    `convs` convolutional layers (4, the paper's choice; None: all of them) and of all its dense layers,
    each into the layer at the same place in `target` (the same block and position in it; the same
    position among the dense layers) when the shapes agree. Every other layer of target keeps its values.
    Returns the names (in target) of the layers copied.

    From net A into D, say, that is conv1_1, conv2_1, conv3_1, conv3_2 (the first convolution of blocks 1 and
    2, the first two of block 3) and the three dense layers; the layers in between start random, which
    leaves the deeper network free to learn them."""
    check_materialized(source, "init_from (the source)")
    check_materialized(target, "init_from (the target)")
    copied = []
    for kind, limit in ((nn.Conv2d, convs), (nn.Linear, None)):
        wanted = _places(source, kind)[:limit]
        there = {place: layer for place, _, layer in wanted}
        for place, name, layer in _places(target, kind):
            from_layer = there.get(place)
            if from_layer is None or from_layer.weight.shape != layer.weight.shape or \
                    (from_layer.bias is None) != (layer.bias is None):
                continue
            with no_grad():
                for pname, p in layer.named_parameters(recurse=False):  # in place: an optimizer keeps p
                    p.data[...] = backend.to_device(from_layer.get_parameter(pname).data, p.device)
            copied.append(name)
    return copied
