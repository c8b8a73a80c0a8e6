"""VGG assembled from blocks: D2L's `vgg_block`/`vgg(conv_arch)` and the configurations A-E of
Simonyan & Zisserman (2014), Table 1; `summary` prints the per-block (or, Keras's, per-layer) table;
`to_fully_convolutional` is the paper's dense test-time network; `load_torchvision_weights` reads
torchvision's ImageNet weights and `init_from` is the paper's warm start of a deeper configuration."""
import math
import os

import numpy as np

from . import backend, nn
from .autograd import Tensor, no_grad
from .backend import array_module_for
from .nn.module import key_problems
from .nn.utils import eval_mode, leaf_modules

# D2L's VGG-11: (number of convolutions, output channels) per block.
CONV_ARCH = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))

# The paper's Table 1, block by block. An int is a 3x3 convolution with that many channels;
# ("conv1", n) a 1x1 convolution (configuration C); "LRN" a local response normalization.
CONFIGS = {
    "A": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "A-LRN": ((64, "LRN"), (128,), (256, 256), (512, 512), (512, 512)),
    "B": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "C": ((64, 64), (128, 128), (256, 256, ("conv1", 256)), (512, 512, ("conv1", 512)),
          (512, 512, ("conv1", 512))),
    "D": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "E": ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}
ALIASES = {"vgg11": "A", "vgg11-lrn": "A-LRN", "vgg13": "B", "vgg16": "D", "vgg19": "E", "vgg16-c": "C"}


def small_conv_arch(conv_arch=CONV_ARCH, ratio=4):
    """D2L's smaller network for Fashion-MNIST: every block's channels divided by `ratio`."""
    return tuple((num_convs, out_channels // ratio) for num_convs, out_channels in conv_arch)


def vgg_block(num_convs, out_channels, in_channels=None):
    """`num_convs` 3x3 convolutions (padding 1) each followed by ReLU, then 2x2 max-pooling, stride 2.

    Halves height and width and keeps them otherwise. With in_channels=None the first convolution is
    lazy (it reads its input channels from the first batch), as in D2L.
    """
    layers = []
    for _ in range(num_convs):
        conv = nn.LazyConv2d(out_channels, 3, padding=1) if in_channels is None else \
            nn.Conv2d(in_channels, out_channels, 3, padding=1)
        layers += [conv, nn.ReLU()]
        in_channels = out_channels
    layers.append(nn.MaxPool2d(2, stride=2))
    return nn.Sequential(*layers)


def _dense_head(num_classes, dropout=0.5):
    """D2L's and the paper's classifier: Flatten, two 4096-wide layers with ReLU and dropout, the output."""
    return [nn.Flatten(),
            nn.LazyLinear(4096), nn.ReLU(), nn.Dropout(dropout),
            nn.LazyLinear(4096), nn.ReLU(), nn.Dropout(dropout),
            nn.LazyLinear(num_classes)]


def vgg(conv_arch=CONV_ARCH, num_classes=10, in_channels=1):
    """D2L's VGG: one `vgg_block` per (num_convs, out_channels) in conv_arch, then the dense head.

    The dense layers are lazy: their input size depends on the image size (7x7x512 at 224, 1x1 at 32).
    """
    blocks = []
    for num_convs, out_channels in conv_arch:
        blocks.append(vgg_block(num_convs, out_channels, in_channels))
        in_channels = out_channels
    return nn.Sequential(*blocks, *_dense_head(num_classes))


def _config_block(spec, in_channels, ratio):
    layers = []
    for item in spec:
        if item == "LRN":
            layers.append(nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0))  # AlexNet's parameters
            continue
        kernel, out = (1, item[1]) if isinstance(item, tuple) else (3, item)
        out = out // ratio
        layers += [nn.Conv2d(in_channels, out, kernel, padding=kernel // 2), nn.ReLU()]
        in_channels = out
    layers.append(nn.MaxPool2d(2, stride=2))
    return nn.Sequential(*layers), in_channels


def vgg_from_config(name, num_classes=1000, in_channels=3, ratio=1):
    """A configuration of the paper's Table 1: "A", "A-LRN", "B", "C", "D", "E" (or vgg11/13/16/19).

    `ratio` divides every convolution's channels (D2L's trick for small machines); the dense head keeps
    4096 units as in D2L.
    """
    key = ALIASES.get(str(name).lower(), str(name).upper())
    if key not in CONFIGS:
        raise ValueError(f"unknown VGG configuration {name!r}: use one of {', '.join(CONFIGS)} "
                         f"or {', '.join(ALIASES)}")
    blocks = []
    for spec in CONFIGS[key]:
        block, in_channels = _config_block(spec, in_channels, ratio)
        blocks.append(block)
    return nn.Sequential(*blocks, *_dense_head(num_classes))


def build(arch="vgg11", ratio=4, num_classes=10, in_channels=1):
    """The network the CLI trains: "d2l" (D2L's VGG-11 with small_conv_arch) or any Table 1 name."""
    if str(arch).lower() in ("d2l", "vgg"):
        return vgg(small_conv_arch(CONV_ARCH, ratio), num_classes, in_channels)
    return vgg_from_config(arch, num_classes, in_channels, ratio)


def _block_outputs(net, x):
    """Run the network block by block: [(index, block, output shape)]; a block whose input is too small
    is named in the error."""
    outputs = []
    for i, block in enumerate(net):
        x = nn.call_layer(block, str(i), x)
        outputs.append((i, block, x.shape))
    return outputs


def _dry_run(net, input_shape, device):
    """One forward pass on zeros, without a graph and in evaluation mode, on `device` (made CuPy's current
    device); materializes lazy layers."""
    with eval_mode(net), no_grad(), backend.use_device(device):
        x = Tensor(array_module_for(device).zeros(input_shape, dtype=np.float32))
        return _block_outputs(net, x)


INITIALIZERS = {
    "xavier": nn.init.xavier_uniform_,  # D2L's choice
    "normal": lambda w: nn.init.normal_(w, 0.0, 0.01),  # std 0.01 (the paper's variance 10^-2 is std 0.1)
    "kaiming": nn.init.kaiming_normal_,
}


def initialize(net, input_shape, scheme="xavier", device="cpu", output_std=None):
    """Materialize lazy layers with a dry run on `input_shape`, then draw every Conv2d/Linear weight by
    `scheme` ('xavier', 'normal' or 'kaiming') and set the biases to zero. Returns the net.

    output_std: if given, the last layer (the classifier's output) is drawn from N(0, output_std) instead,
    so the first logits are near zero and the loss starts at log(classes); a deep plain net then leaves
    its first plateau sooner (benchmarks/RESULTS.md has the Fashion-MNIST runs).
    """
    if scheme not in INITIALIZERS:
        raise ValueError(f"unknown init {scheme!r}: use one of {', '.join(INITIALIZERS)}")
    _dry_run(net, input_shape, device)
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for m in layers:
        INITIALIZERS[scheme](m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    if output_std is not None and layers:
        nn.init.normal_(layers[-1].weight, 0.0, output_std)
    return net


def summary(net, input_shape, file=None, device="cpu", per_layer=False):
    """Print, per top-level block, its name, output shape and parameter count, then the total.

    Runs one forward pass on zeros (which also materializes lazy layers).
    Returns the rows as a list of (name, output shape, parameters).

    per_layer=True prints Keras's table instead: every leaf layer (its dotted name and type, output shape,
    parameters), then the total, trainable and non-trainable (frozen) parameter counts; it returns
    rows of (name, type, output shape, parameters).
    """
    if per_layer:
        return _layer_summary(net, input_shape, file, device)
    outputs = _dry_run(net, input_shape, device)
    rows = [(type(block).__name__, tuple(shape), sum(p.size for p in block.parameters()))
            for _, block, shape in outputs]
    total = sum(r[2] for r in rows)
    lines = [f"{'layer':<20} {'output shape':<22} {'parameters':>12}"]
    lines += [f"{name + ' ' + str(i):<20} {str(shape):<22} {count:>12,}" for i, (name, shape, count) in enumerate(rows)]
    lines.append(f"{'total':<20} {'':<22} {total:>12,}")
    print("\n".join(lines), file=file)
    return rows



def _layer_summary(net, input_shape, file, device):
    leaves = leaf_modules(net)
    shapes = {}

    def recorder(name):
        def hook(module, inputs, output):
            shapes[name] = tuple(output.shape)
        return hook

    handles = [m.register_forward_hook(recorder(name)) for name, m in leaves]
    try:
        _dry_run(net, input_shape, device)
    finally:
        for h in handles:
            h.remove()
    rows = [(name, type(m).__name__, shapes.get(name), sum(p.size for p in m.parameters())) for name, m in leaves]
    params = list(net.parameters())
    total = sum(p.size for p in params)
    trainable = sum(p.size for p in params if p.requires_grad)
    rule = "=" * 72
    lines = [f"{'Layer (type)':<32} {'Output Shape':<24} {'Param #':>14}", rule]
    lines += [f"{f'{name} ({kind})':<32} {str(shape) if shape else '-':<24} {count:>14,}"
              for name, kind, shape, count in rows]
    lines += [rule, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
              f"Non-trainable params: {total - trainable:,}"]
    print("\n".join(lines), file=file)
    return rows

def count_flops(net, input_shape):
    """Floating-point operations of one forward pass for one input of `input_shape`, split into
    {"conv": ..., "dense": ...}: 2 per multiply-add, counted from each layer's weight and output size."""
    counts = {"conv": 0, "dense": 0}

    def conv_hook(module, inputs, output):
        counts["conv"] += 2 * module.weight.size * output.shape[2] * output.shape[3] * output.shape[0] // input_shape[0]

    def dense_hook(module, inputs, output):
        counts["dense"] += 2 * module.weight.size * output.shape[0] // input_shape[0]

    handles = [m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else dense_hook)
               for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        _dry_run(net, input_shape, "cpu")
    finally:
        for h in handles:
            h.remove()
    return counts


def to_fully_convolutional(net):
    """The paper's test-time network: Flatten + the three Linear layers become a 7x7 convolution and two
    1x1 convolutions sharing their weights, then a spatial average of the class-score map.

    Accepts any input at least as large as the training size; on that size it gives the original logits.
    """
    layers = list(net)
    flatten_at = next((i for i, m in enumerate(layers) if isinstance(m, nn.Flatten)), None)
    if flatten_at is None:
        raise ValueError("to_fully_convolutional: the network has no Flatten layer before its dense part")
    features = layers[:flatten_at]
    channels = [m.out_channels for m in nn.Sequential(*features).modules() if isinstance(m, nn.Conv2d)][-1]
    converted, first = [], True
    for m in layers[flatten_at + 1:]:
        if isinstance(m, nn.Linear):
            if not m.weight.is_materialized:
                raise RuntimeError("to_fully_convolutional: run one forward pass first, so the lazy dense "
                                   "layers know their input size")
            in_ch = channels if first else m.in_features
            k = int(round(math.sqrt(m.in_features / in_ch))) if first else 1
            if in_ch * k * k != m.in_features:
                raise ValueError(f"to_fully_convolutional: {m.in_features} inputs are not {in_ch} maps of k x k")
            conv = nn.Conv2d(in_ch, m.out_features, k)
            conv.to(m.weight.device)
            conv.weight.data = m.weight.data.reshape(m.out_features, in_ch, k, k)  # flatten order is (C, H, W)
            conv.bias.data = m.bias.data
            converted.append(conv)
            first = False
        else:
            converted.append(m)
    return nn.Sequential(*features, *converted, nn.GlobalAvgPool2d(), nn.Flatten())


# ---------------------------------------------------------------------------------------------------
# Transfer learning: torchvision's ImageNet weights, and the paper's warm start of a deeper configuration
# ---------------------------------------------------------------------------------------------------
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
        for pname, p in m._parameters.items():
            if p is not None:
                names[f"{prefix}.{pname}"] = (f"{name}.{pname}", p)
    return names


_TO_NPZ = ("python -c \"import torch, numpy; sd = torch.load('vgg16-397923af.pth'); "
           "numpy.savez('vgg16.npz', **{k: v.numpy() for k, v in sd.items()})\"")


def _read_state(state_dict_or_path):
    """A dict {key: NumPy array} from a dict (of arrays, minivgg Tensors or torch tensors), a .npz file or
    a .pth file (read through PyTorch)."""
    source = state_dict_or_path
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise FileNotFoundError(f"load_torchvision_weights: no file at {path!r}")
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as data:
                source = {k: data[k] for k in data.files}
        else:
            try:
                import torch
            except ImportError:
                raise ImportError(f"load_torchvision_weights: reading {path!r} needs PyTorch (pip install torch). "
                                  f"Without it, convert the file to .npz on a machine that has it: {_TO_NPZ}") \
                    from None
            source = torch.load(path, map_location="cpu", weights_only=True)
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
    for key, (name, p) in names.items():
        if key not in state:
            continue
        stored = tuple(state[key].shape)
        if p.is_materialized:
            fits = stored == p.shape
            expected = p.shape
        else:  # a lazy layer not yet called knows its output size only
            out = getattr(net._owner_of(name), "out_features", None) or net._owner_of(name).out_channels
            fits = len(stored) >= 1 and stored[0] == out
            expected = f"({out}, ...)"
        if not fits:
            problems.append(f"first shape mismatch: {key} has shape {stored} in the weights, but the model's "
                            f"{name} has {expected}")
            break
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
    names = list(net._modules)
    flatten = [name for name in names if isinstance(net._modules[name], nn.Flatten)]
    if not flatten:
        raise ValueError("freeze_features: the network has no Flatten layer between its convolutional part and "
                         "its dense part; build it with models.vgg or models.vgg_from_config")
    frozen = names[:names.index(flatten[0])]
    for name in frozen:
        net._modules[name].requires_grad_(False)
    return frozen


def _places(net, kind):
    """[(place, name, layer)] of the `kind` layers of net in forward order; a layer's place is (the name of
    the module holding it, its position among the `kind` layers there): (block, k-th convolution in the
    block) for a convolution, ('', k-th dense layer) for a dense one."""
    counts, places = {}, []
    for parent_name, parent in net.named_modules():
        for child_name, child in parent._modules.items():
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
    source._check_materialized("init_from (the source)")
    target._check_materialized("init_from (the target)")
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
                for pname, p in layer._parameters.items():
                    if p is not None:  # copied in place: an optimizer built before still holds p
                        p.data[...] = backend.to_device(from_layer._parameters[pname].data, p.device)
            copied.append(name)
    return copied
