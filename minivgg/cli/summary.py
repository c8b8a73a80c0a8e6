"""`minivgg summary`: D2L's table of a network's output shapes and parameter counts, block by block (or Keras's,
layer by layer)."""


def cmd_summary(args):
    from .. import models, summary

    net = models.build(args.arch, args.ratio, num_classes=args.classes, in_channels=args.in_channels)
    summary(net, (1, args.in_channels, args.resize, args.resize), per_layer=args.per_layer)
    return 0
