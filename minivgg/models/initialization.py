"""Weight initialization: `dry_run` (one forward pass on zeros, which materializes lazy layers and gives
every block's output shape) and `initialize` with one of the `INITIALIZERS`."""
import numpy as np

from .. import backend, nn
from ..autograd import Tensor, no_grad
from ..backend import array_module_for
from ..nn.utils import eval_mode


def _block_outputs(net, x):
    """Run the network block by block: [(index, block, output shape)]; a block whose input is too small
    is named in the error."""
    outputs = []
    for i, block in enumerate(net):
        x = nn.call_layer(block, str(i), x)
        outputs.append((i, block, x.shape))
    return outputs


def dry_run(net, input_shape, device="cpu"):
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
    its first plateau sooner.
    """
    if scheme not in INITIALIZERS:
        raise ValueError(f"unknown init {scheme!r}: use one of {', '.join(INITIALIZERS)}")
    dry_run(net, input_shape, device)
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for m in layers:
        INITIALIZERS[scheme](m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    if output_std is not None and layers:
        nn.init.normal_(layers[-1].weight, 0.0, output_std)
    return net
