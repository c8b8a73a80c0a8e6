"""The paper's dense test-time network: `to_fully_convolutional` turns the dense head into convolutions."""
import math

from .. import nn


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
