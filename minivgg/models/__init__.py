"""VGG assembled from blocks, and what is done with it; every name below is importable from `minivgg.models`.

architectures: CONV_ARCH, CONFIGS, ALIASES, canonical_arch, arch_key, small_conv_arch, vgg_block, vgg, vgg_from_config,
    build.
initialization: dry_run, INITIALIZERS, initialize.
summary: summary (per block, or Keras's per layer), count_flops.
fully_convolutional: to_fully_convolutional (the paper's dense test-time network).
transfer: load_torchvision_weights, freeze_features, init_from (the paper's warm start).
"""
from .architectures import (ALIASES, CONFIGS, CONV_ARCH, D2L_NAMES, arch_key, build, canonical_arch,
                            small_conv_arch, vgg, vgg_block, vgg_from_config)
from .fully_convolutional import to_fully_convolutional
from .initialization import INITIALIZERS, dry_run, initialize
from .summary import count_flops, summary
from .transfer import _torchvision_names, freeze_features, init_from, load_torchvision_weights


__all__ = ["CONV_ARCH", "CONFIGS", "ALIASES", "D2L_NAMES", "canonical_arch", "arch_key", "small_conv_arch", "vgg_block",
           "vgg", "vgg_from_config", "build", "dry_run", "INITIALIZERS", "initialize", "summary", "count_flops",
           "to_fully_convolutional", "load_torchvision_weights", "freeze_features", "init_from"]
