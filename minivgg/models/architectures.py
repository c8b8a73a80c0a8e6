"""The networks: D2L's `vgg_block` and `vgg(conv_arch)`, the configurations A-E of Simonyan & Zisserman
(2014), Table 1 (`vgg_from_config`), and `build`, which makes either from its name (`canonical_arch`)."""
from .. import nn
from ..nn import _checks

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
D2L_NAMES = ("d2l", "vgg")  # D2L's VGG-11 with small_conv_arch, which `build` makes


def canonical_arch(name):
    """The key of the network `name` stands for: 'd2l' for D2L's VGG (names D2L_NAMES), else the Table 1
    configuration ('A', 'A-LRN', 'B', 'C', 'D', 'E'; any case, or an alias such as 'vgg16'). An unknown name
    raises ValueError listing the valid ones."""
    text = str(name)
    if text.lower() in D2L_NAMES:
        return "d2l"
    key = ALIASES.get(text.lower(), text.upper())
    if key not in CONFIGS:
        raise ValueError(f"unknown VGG configuration {name!r}: use one of {', '.join(D2L_NAMES)}, "
                         f"{', '.join(CONFIGS)} or {', '.join(ALIASES)}")
    return key


def arch_key(name):
    """canonical_arch's key for `name`, or None where it names no network."""
    try:
        return canonical_arch(name)
    except ValueError:
        return None


def _checked_arch(owner, conv_arch):
    """conv_arch, if every entry is a pair (num_convs, out_channels) of positive ints, and there is one."""
    if not isinstance(conv_arch, (tuple, list)) or not conv_arch:
        raise ValueError(f"{owner}: conv_arch must be a non-empty list of pairs (num_convs, out_channels), e.g. "
                         f"((1, 64), (1, 128)), got {conv_arch!r}")
    for i, entry in enumerate(conv_arch):
        if not (isinstance(entry, (tuple, list)) and len(entry) == 2):
            raise TypeError(f"{owner}: conv_arch[{i}] must be a pair (num_convs, out_channels), got {entry!r}")
        _checks.int_at_least(owner, f"num_convs of conv_arch[{i}]", entry[0])
        _checks.int_at_least(owner, f"out_channels of conv_arch[{i}]", entry[1])
    return conv_arch


def _check_ratio(owner, ratio, fewest_channels):
    """`ratio` divides every convolution's channels: a positive int, at most the fewest of them."""
    _checks.int_at_least(owner, "ratio", ratio)
    if ratio > fewest_channels:
        raise ValueError(f"{owner}: ratio must be at most {fewest_channels}, the fewest channels of a convolution "
                         f"(it divides them all), got {ratio}")


def small_conv_arch(conv_arch=CONV_ARCH, ratio=4):
    """D2L's smaller network for Fashion-MNIST: every block's channels divided by `ratio`."""
    channels = [out_channels for _, out_channels in _checked_arch("small_conv_arch", conv_arch)]
    _check_ratio("small_conv_arch", ratio, min(channels, default=ratio))
    return tuple((num_convs, out_channels // ratio) for num_convs, out_channels in conv_arch)


def vgg_block(num_convs, out_channels, in_channels=None):
    """`num_convs` 3x3 convolutions (padding 1) each followed by ReLU, then 2x2 max-pooling, stride 2.

    Halves height and width and keeps them otherwise. With in_channels=None the first convolution is
    lazy (it reads its input channels from the first batch), as in D2L.
    """
    num_convs = _checks.int_at_least("vgg_block", "num_convs", num_convs)
    out_channels = _checks.int_at_least("vgg_block", "out_channels", out_channels)
    in_channels = _checks.int_at_least("vgg_block", "in_channels", in_channels, none_ok=True)
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
    for num_convs, out_channels in _checked_arch("vgg", conv_arch):
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
    key = canonical_arch(name)
    if key == "d2l":
        raise ValueError("vgg_from_config: 'd2l' is no Table 1 configuration; models.build('d2l') builds it")
    _check_ratio("vgg_from_config", ratio, 64)  # 64: the fewest channels in Table 1
    blocks = []
    for spec in CONFIGS[key]:
        block, in_channels = _config_block(spec, in_channels, ratio)
        blocks.append(block)
    return nn.Sequential(*blocks, *_dense_head(num_classes))


def build(arch="vgg11", ratio=4, num_classes=10, in_channels=1):
    """The network the CLI trains: "d2l" (D2L's VGG-11 with small_conv_arch) or any Table 1 name."""
    key = canonical_arch(arch)
    _check_ratio("build", ratio, 64)  # 64: the fewest channels of D2L's VGG and of Table 1
    if key == "d2l":
        return vgg(small_conv_arch(CONV_ARCH, ratio), num_classes, in_channels)
    return vgg_from_config(arch, num_classes, in_channels, ratio)
