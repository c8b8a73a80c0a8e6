"""VGG assembled from blocks: D2L's `vgg_block`/`vgg(conv_arch)` and the configurations A-E of
Simonyan & Zisserman (2014), Table 1; `summary` prints the per-block table; `to_fully_convolutional` is
the paper's dense test-time network."""
import math

import numpy as np

from . import backend, nn
from .autograd import Tensor, no_grad
from .backend import array_module_for

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
    was_training = net.training
    net.eval()
    try:
        with no_grad(), backend.use_device(device):
            x = Tensor(array_module_for(device).zeros(input_shape, dtype=np.float32))
            return _block_outputs(net, x)
    finally:
        net.train(was_training)


INITIALIZERS = {
    "xavier": nn.init.xavier_uniform_,  # D2L's choice
    "normal": lambda w: nn.init.normal_(w, 0.0, 0.01),  # the paper's N(0, 0.01)
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


def summary(net, input_shape, file=None, device="cpu"):
    """Print, per top-level block, its name, output shape and parameter count, then the total.

    Runs one forward pass on zeros (which also materializes lazy layers).
    Returns the rows as a list of (name, output shape, parameters).
    """
    outputs = _dry_run(net, input_shape, device)
    rows = [(type(block).__name__, tuple(shape), sum(p.size for p in block.parameters()))
            for _, block, shape in outputs]
    total = sum(r[2] for r in rows)
    lines = [f"{'layer':<20} {'output shape':<22} {'parameters':>12}"]
    lines += [f"{name + ' ' + str(i):<20} {str(shape):<22} {count:>12,}" for i, (name, shape, count) in enumerate(rows)]
    lines.append(f"{'total':<20} {'':<22} {total:>12,}")
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
