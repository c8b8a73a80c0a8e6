"""`torch.nn.functional`'s names for minivgg's kernels, so that `import minivgg.nn.functional as F` reads
as in PyTorch. The kernels themselves, forward and backward, are in minivgg/functional.py."""
from ..functional import (  # noqa: F401  (re-exported)
    adaptive_avg_pool2d,
    avg_pool2d,
    binary_cross_entropy_with_logits,
    conv2d,
    cross_entropy,
    dropout,
    linear,
    local_response_norm,
    log_softmax,
    max_pool2d,
    mse_loss,
    relu,
    sigmoid,
    softmax,
    tanh,
)
