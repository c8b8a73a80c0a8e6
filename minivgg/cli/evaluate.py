"""`minivgg evaluate RUN_DIR`: a run's test accuracy (one plain pass, or the paper's dense or multi-crop
evaluation at several scales), its per-class accuracy and its confusion matrix."""
import dataclasses
import os
import time

from .. import backend
from ..config import RunConfig
from ..recipe import augment_loaders, build_model, input_size
from .folders import folder_data


def cmd_evaluate(args):
    from .. import evaluation, train
    from ..checkpoint import load_checkpoint
    from ..plotting import plot_confusion

    device = backend.canonical_device(args.device)
    state = load_checkpoint(os.path.join(args.run_dir, train.CHECKPOINT), device=device)
    config = RunConfig.from_dict(state["config"])
    net = build_model(config, device)
    net.load_state_dict(state["model"])
    mode = "multi-crop" if args.multi_crop else "dense" if args.dense or args.scales else "plain"
    size = input_size(config)
    test_scale = config.resize  # Q; above the network's input when the run trained on crops
    scales = None if mode == "plain" else args.scales or [
        evaluation.default_crop_scale(size) if mode == "multi-crop" and test_scale <= size else test_scale]
    test, names, images = test_data(config, args, device)
    augment_loaders(config, test_loader=test, whole_images=mode != "plain")  # the training mean; plain: its crop
    started = time.perf_counter()
    predicted, true = evaluation.predict(net, test, mode, size=size, scales=scales, grid=args.grid,
                                         flips=args.flip and mode != "plain")
    grid = f" {args.grid}x{args.grid} crops" if mode == "multi-crop" else ""
    how = "" if mode == "plain" else (f", {mode}{grid} at {' '.join(map(str, scales))}"
                                      f"{' with flips' if args.flip else ''}")
    print(f"test accuracy {float((predicted == true).mean()):.4f} on {len(true)} {images} "
          f"({state['epoch']} epochs of {config.arch}{how}; {time.perf_counter() - started:.1f} sec)")
    confusion = confusion_matrix(true, predicted, len(names))
    width = max(12, *map(len, names))
    print(f"{'class':<{width}} {'accuracy':>9}")
    for c, name in enumerate(names):
        print(f"{name:<{width}} {confusion[c, c] / max(confusion[c].sum(), 1):>9.3f}")
    path = os.path.join(args.run_dir, "confusion.png")
    plot_confusion(confusion, names, path)
    print(f"confusion matrix: {path}")
    return 0


def test_data(config, args, device):
    """(loader, class names, what its images are) of the run's test images: Fashion-MNIST's test set, or the
    held-out part of its image folder (read from --data-dir if it moved). Each evaluation mode rescales the
    original images itself, once, to each scale it needs."""
    from .. import data

    if not (config.data_dir or args.data_dir):
        test = data.DataLoader(data.load_fashion_mnist("test", args.data), 256, device=device)
        return test, data.text_labels, "images"
    if not config.data_dir:
        raise ValueError(f"--data-dir: the run in {args.run_dir} was trained on Fashion-MNIST, not on a folder")
    if args.data:
        raise ValueError(f"--data: the run in {args.run_dir} was trained on the image folder {config.data_dir}, "
                         f"not on Fashion-MNIST: give a moved copy of that folder with --data-dir")
    if args.data_dir:
        config = dataclasses.replace(config, data_dir=os.path.abspath(args.data_dir))
    test = folder_data(config, device)[1]  # the held-out part of the run's split
    return test, list(config.classes), f"held-out images of {config.data_dir}"


def confusion_matrix(true, predicted, classes):
    """matrix[i, j]: how many images of class i were predicted as class j."""
    import numpy as np

    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (true, predicted), 1)
    return matrix
