"""`minivgg inspect`: one batch through a network, its per-layer activations and gradients, and the graph of
its loss."""
import dataclasses
import os

from ..config import RunConfig
from ..recipe import augment_loaders, build_model, input_size
from .folders import folder_data


def cmd_inspect(args):
    """A run's network (its own data: Fashion-MNIST's test images or its folder's held-out ones, with its
    crop and normalization), or a fresh one of --arch: one batch's layer table and the graph of its loss."""
    from .. import data, manual_seed, train
    from ..checkpoint import load_checkpoint
    from ..inspection import draw_graph, layer_table

    config = RunConfig(arch=args.arch, ratio=args.ratio, resize=args.resize, init="xavier")
    if args.run:
        state = load_checkpoint(os.path.join(args.run, train.CHECKPOINT), device=args.device)
        config = dataclasses.replace(RunConfig.from_dict(state["config"]), batch_size=args.batch_size)
    manual_seed(0)
    net = build_model(config, args.device)
    if args.run:
        net.load_state_dict(state["model"])
    if config.data_dir:
        loader, source = folder_data(config, args.device)[1], f"held-out images of {config.data_dir}"
    else:
        loader, source = data.DataLoader(data.load_fashion_mnist("test", args.data), args.batch_size,
                                         device=args.device, resize=input_size(config)), "test images"
    augment_loaders(config, test_loader=loader)  # a run's own centre crop and normalization
    images, labels = next(iter(loader))
    size = input_size(config)
    print(f"one batch of {len(labels)} {source} at {size}x{size} through {config.arch} (channels / "
          f"{config.ratio})" + (f", weights of {args.run}" if args.run else ""))
    net.eval()  # dropout off, so the table is repeatable
    layer_table(net, images, labels)
    loss = train.classification_loss(net(images), labels)
    path = draw_graph(loss, os.path.join(args.out or args.run or ".", "graph.svg"), params=net)
    print(f"graph: {path}")
    return 0
