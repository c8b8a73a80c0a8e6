"""The `minivgg` command (also `python -m minivgg`):

    minivgg train [--device cpu|cuda] [--epochs N] [--resume RUN_DIR] ...   train VGG on Fashion-MNIST
    minivgg evaluate RUN_DIR [--dense|--multi-crop] [--scales Q ...]        test accuracy, per class, confusion
    minivgg summary [--arch vgg11] [--ratio 1] [--resize 224]               D2L's shape/parameter table
    minivgg inspect [--arch d2l] [--run RUN_DIR]                             per-layer activations and gradients
    minivgg doctor [--device cuda:N]                                         is the GPU path usable here, and right
"""
import argparse
import math
import os
import sys
import tempfile
import time

from . import backend, models, tiers
from .recipe import (DEVICE_DEFAULTS, IMAGENET_MEAN, IMAGENET_STD, MODEL_KEYS, PIXEL_KEYS, RECIPES, augment_loaders,
                     build_model, build_optimizer, describe_augment, fill_defaults, input_size)
from .train import CHECKPOINT, INTERRUPTED


# ---------------------------------------------------------------------------------------------------
# Checks of the command line. Each fails with argparse's usage error (exit code 2) naming the option and
# what it accepts, before anything is printed, created or restarted. The per-value checks are `type=`
# functions; those that need two options or the file system are in `_check_args`, which main() runs.
# ---------------------------------------------------------------------------------------------------
def _integer(minimum):
    """type=: an integer >= minimum."""
    def integer(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text}")
        return value

    return integer


def _number(rule, accepts):
    """type=: a finite float for which accepts(value) holds; `rule` says which, e.g. '> 0' or 'in [0, 1)'."""
    def number(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and accepts(value)):
            raise argparse.ArgumentTypeError(f"must be a finite number {rule}, got {text}")
        return value

    return number


def _device(text):
    """type=: cpu, cuda or cuda:N, canonical ('cuda' -> 'cuda:0')."""
    try:
        return backend.canonical_device(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be cpu, cuda or cuda:N, got {text!r}") from None


ARCH_NAMES = ("d2l", *models.CONFIGS, *models.ALIASES)


def _blocks(arch):
    """The output channels of each convolution, block by block, of the network `arch` names (as
    models.build reads the name), or None if models.build does not know it."""
    name = str(arch).lower()
    if name in ("d2l", "vgg"):
        return [[channels] * convs for convs, channels in models.CONV_ARCH]
    key = models.ALIASES.get(name, name.upper())
    if key not in models.CONFIGS:
        return None
    return [[item[1] if isinstance(item, tuple) else item for item in spec if item != "LRN"]
            for spec in models.CONFIGS[key]]


def _arch(text):
    """type=: a name models.build knows (case as the user wrote it, as before)."""
    if _blocks(text) is None:
        raise argparse.ArgumentTypeError(f"unknown architecture {text!r}: use one of {', '.join(ARCH_NAMES)}")
    return text


POSITIVE_INT = _integer(1)
POSITIVE = _number("> 0", lambda v: v > 0)
NON_NEGATIVE = _number(">= 0", lambda v: v >= 0)


def _add_model_args(p, arch="d2l", ratio=4):
    p.add_argument("--arch", type=_arch, default=arch,
                   help="'d2l' (D2L's VGG-11 with channels / ratio) or a Table 1 name: A, A-LRN, B, C, D, E, "
                        "vgg11, vgg13, vgg16, vgg19")
    default = f"default {ratio}" if ratio else "default 4, or 1 with --torchvision-weights"
    p.add_argument("--ratio", type=POSITIVE_INT, default=ratio,
                   help=f"divide every convolution's channels by this (at most 64: each keeps at least one; "
                        f"{default})")


def build_parser():
    parser = argparse.ArgumentParser(prog="minivgg", description="VGG from scratch on NumPy (CPU) or CuPy (GPU).")
    sub = parser.add_subparsers(dest="command")

    train = sub.add_parser("train", help="train VGG on Fashion-MNIST")
    _add_model_args(train, ratio=None)
    def defaults(key, what):  # the help names both devices' defaults, read from DEVICE_DEFAULTS
        cpu, gpu = DEVICE_DEFAULTS["cpu"][key], DEVICE_DEFAULTS["cuda"][key]
        return f"{what} (CPU default {cpu}; GPU default {gpu}, as in D2L)"

    train.add_argument("--resize", type=POSITIVE_INT, help=defaults("resize", "input size"))
    train.add_argument("--epochs", type=POSITIVE_INT, help=defaults("epochs", "total number of epochs"))
    train.add_argument("--batch-size", type=POSITIVE_INT, help=defaults("batch_size", "examples per step"))
    train.add_argument("--optimizer", choices=["sgd", "adam"], help=defaults("optimizer", "update rule"))
    train.add_argument("--lr", type=POSITIVE, help=defaults("lr", "peak learning rate"))
    train.add_argument("--momentum", type=_number("in [0, 1)", lambda v: 0 <= v < 1),
                       help=defaults("momentum", "SGD momentum"))
    train.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None,
                       help=defaults("nesterov", "Nesterov momentum for SGD"))
    train.add_argument("--weight-decay", type=NON_NEGATIVE, help="L2 penalty (default 0)")
    train.add_argument("--scheduler", choices=["none", "step", "cosine", "plateau"],
                       help=defaults("scheduler", "learning-rate schedule; cosine anneals after every batch"))
    train.add_argument("--warmup-epochs", type=NON_NEGATIVE,
                       help=defaults("warmup_epochs", "with cosine: raise the rate linearly over this many "
                                                      "epochs first"))
    train.add_argument("--clip-grad-norm", type=NON_NEGATIVE, metavar="MAX",
                       help=defaults("clip_grad_norm", "scale each step's gradients to a joint norm of at most "
                                                       "MAX; 0: off"))
    train.add_argument("--init", choices=["xavier", "normal", "kaiming"],
                       help=defaults("init", "weight initialization (normal: N(0, 0.01^2))"))
    train.add_argument("--output-std", type=NON_NEGATIVE,
                       help=defaults("output_std", "draw the output layer's weights from N(0, STD); 0: like "
                                                   "the other layers"))
    train.add_argument("--recipe", choices=sorted(RECIPES),
                       help="a preset: 'paper' is Simonyan & Zisserman's section 3.1 (SGD lr 0.01 momentum 0.9, "
                            "batch 256, weight decay 5e-4, plateau schedule, random crops with scale jittering, "
                            "flips, intensity shift, mean subtraction); the options given explicitly win")
    train.add_argument("--crop", type=POSITIVE_INT, metavar="SIZE",
                       help="train on SIZE x SIZE crops at random positions of the images rescaled to --resize "
                            "(their smallest side; the test set: the centre crop); the network's input is SIZE")
    train.add_argument("--scale-jitter", type=POSITIVE_INT, nargs=2, metavar=("MIN", "MAX"),
                       help="rescale each batch to a scale drawn from [MIN, MAX] before cropping (test scale: "
                            "--resize, default (MIN + MAX) / 2; crop: --crop, default the device's input size)")
    train.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                       help="random horizontal flips of the training images (default off)")
    train.add_argument("--intensity-shift", type=NON_NEGATIVE, metavar="SIGMA",
                       help="add to each training image the colour offset of AlexNet's PCA shift with weights "
                            "N(0, SIGMA) (one channel: N(0, SIGMA x the pixels' std)); 0: off (default)")
    train.add_argument("--subtract-mean", action=argparse.BooleanOptionalAction, default=None,
                       help="subtract the training set's per-channel mean from every image (default off)")
    train.add_argument("--device", type=_device, default="cpu", help="cpu, cuda or cuda:N")
    train.add_argument("--tf32", action="store_true",
                       help="GPU only: let float32 matrix products (convolutions, linear layers) use TF32 tensor "
                            "cores on NVIDIA Ampere or newer, faster with inputs rounded to a 10-bit mantissa; "
                            "off by default (sets CUPY_TF32=1 for this run)")
    train.add_argument("--seed", type=_integer(0), default=0)
    folder = train.add_mutually_exclusive_group()
    folder.add_argument("--out", help="run folder (default runs/<date-time>)")
    folder.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last epoch")
    train.add_argument("--init-from", metavar="RUN_DIR",
                       help="warm start, as the paper's deeper nets from net A: copy the first four convolutions "
                            "and the dense layers of the run in RUN_DIR where place and shape match")
    train.add_argument("--limit-batches", type=POSITIVE_INT, help="use only N batches per epoch (quick runs)")
    train.add_argument("--train-limit", type=POSITIVE_INT, help="use only the first N training images")
    train.add_argument("--data", help="folder holding the Fashion-MNIST files")
    train.add_argument("--data-dir", metavar="DIR",
                       help="train on your own images instead of Fashion-MNIST: DIR holds one sub-folder per class "
                            "of PNG or JPEG files (needs Pillow: pip install -e \".[images]\")")
    train.add_argument("--val-split", type=_number("in (0, 1)", lambda v: 0 < v < 1), metavar="FRACTION",
                       help="with --data-dir: hold out this fraction of the images, drawn with --seed, for the "
                            "test accuracy (default 0.2)")
    train.add_argument("--binary", action="store_true", default=None,
                       help="with --data-dir of two classes: one output (the logit of the second class) trained "
                            "with binary cross-entropy, as a Keras sigmoid output")
    train.add_argument("--torchvision-weights", metavar="FILE",
                       help="start from torchvision's ImageNet weights (.pth, or .npz without PyTorch) of vgg11, "
                            "vgg13, vgg16 or vgg19 (--arch A, B, D or E; --ratio 1 and --resize 224 are then the "
                            "defaults): the last dense layer starts new for your classes and the images are "
                            "normalized by ImageNet's mean and std")
    train.add_argument("--freeze-features", action="store_true", default=None,
                       help="freeze every layer before the dense head (the convolutional part): only the dense "
                            "layers learn, as in the Keras fine-tuning walk-through")
    train.add_argument("--watch-grads", action="store_true", help="record gradient statistics and plot them")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    evaluate = sub.add_parser("evaluate", help="test accuracy, per-class table and confusion matrix of a run")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--device", type=_device, default="cpu")
    evaluate.add_argument("--data")
    evaluate.add_argument("--data-dir", metavar="DIR",
                          help="a run trained on an image folder: read that folder from DIR (default: where it "
                               "was when the run trained); its held-out part is evaluated")
    test_time = evaluate.add_mutually_exclusive_group()  # the paper's section 3.2; default: one plain pass
    test_time.add_argument("--dense", action="store_true",
                           help="the fully-convolutional net on the whole image at each --scales, its class-score "
                                "map averaged (the paper's dense evaluation)")
    test_time.add_argument("--multi-crop", action="store_true",
                           help="crops of the network's input size on a --grid at each --scales (default: the "
                                "run's test scale if larger, else the input size x 256/224), averaged over crops "
                                "and flips")
    evaluate.add_argument("--scales", type=POSITIVE_INT, nargs="+", metavar="Q",
                          help="test scales: the images are rescaled to QxQ, soft-max scores averaged over the "
                               "scales (dense unless --multi-crop); each at least 32, with --multi-crop at least "
                               "the training size")
    evaluate.add_argument("--grid", type=POSITIVE_INT, default=3, help="--multi-crop: GRID x GRID crop positions")
    evaluate.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                          help="--dense, --scales, --multi-crop: also score each image's horizontal flip")

    summary = sub.add_parser("summary", help="print the per-block output shapes and parameter counts")
    _add_model_args(summary, arch="vgg11", ratio=1)
    summary.add_argument("--resize", type=POSITIVE_INT, default=224)
    summary.add_argument("--in-channels", type=POSITIVE_INT, default=1)
    summary.add_argument("--classes", type=POSITIVE_INT, default=10)
    summary.add_argument("--per-layer", action="store_true",
                         help="Keras's table: every layer, then total, trainable and non-trainable parameters")

    inspect = sub.add_parser("inspect", help="one batch: per-layer activation and gradient table, and the graph")
    _add_model_args(inspect)
    inspect.add_argument("--resize", type=POSITIVE_INT, default=32)
    inspect.add_argument("--batch-size", type=POSITIVE_INT, default=16)
    inspect.add_argument("--run", metavar="RUN_DIR", help="load the weights of this run")
    inspect.add_argument("--out", default=None, help="where to write the graph (default: the run folder or .)")
    inspect.add_argument("--device", type=_device, default="cpu")
    inspect.add_argument("--data")

    doctor = sub.add_parser("doctor", help="check the GPU path: versions, every kernel against the CPU, a timed "
                                           "training step (run it first on a GPU; send its output with a bug report)")
    doctor.add_argument("--device", type=_device, default="cuda", help="the GPU to check: cuda or cuda:N")
    doctor.add_argument("--size", type=POSITIVE_INT, default=224, help="input size of the timed step (at least 32)")
    doctor.add_argument("--batch", type=POSITIVE_INT, default=128, help="batch of the timed step")
    parser.commands = {"train": train, "evaluate": evaluate, "summary": summary, "inspect": inspect,
                       "doctor": doctor}
    return parser


def cmd_train(args):
    """Build everything (network, data, optimizer, the resumed state) first, then print the banner and train:
    a start that fails prints no banner, and the run folder appears with the first file written into it."""
    from . import cpu, data, load, manual_seed, train

    device = backend.canonical_device(args.device)
    if args.tf32:  # before CuPy's first float32 matrix product, when it reads the setting
        from . import cuda

        cuda.set_tf32(True)
    if device != "cpu":
        backend.require_cupy()
    else:
        tuned = [name for name, applied in cpu.tune().items() if applied]
    config = {k: getattr(args, k) for k in MODEL_KEYS}
    if args.resume:
        saved = load(os.path.join(args.resume, train.CHECKPOINT))["config"]
        config = {k: (config[k] if k == "epochs" and config[k] else saved.get(k, config[k])) for k in MODEL_KEYS}
        config.update({k: saved[k] for k in PIXEL_KEYS if k in saved})
        config.update({k: saved[k] for k in FOLDER_KEYS + TRANSFER_KEYS if k in saved})
        out = args.resume
    else:
        out = args.out or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
        if args.data_dir:
            config["val_split"] = args.val_split or 0.2
        config.update(binary=bool(args.binary), freeze_features=bool(args.freeze_features))
        if args.torchvision_weights:  # the input statistics the ImageNet weights were trained with
            config["torchvision_weights"] = os.path.abspath(args.torchvision_weights)
            config.update(pixel_mean=list(IMAGENET_MEAN), pixel_std=list(IMAGENET_STD))
            if config["subtract_mean"] is None:
                config["subtract_mean"] = True
    if args.data_dir:  # a resumed run may read its folder from a new place
        config["data_dir"] = os.path.abspath(args.data_dir)
    fill_defaults(config, device)
    manual_seed(config["seed"])
    folder = None
    if config.get("data_dir"):  # the folder gives the network's input channels and outputs: read it first
        train_loader, test_loader, folder = _folder_data(config, device, args.train_limit, args.limit_batches)
        config.update(classes=folder.classes, in_channels=int(folder.images.shape[1]), num_classes=len(folder.classes))
        if config.get("binary"):
            if len(folder.classes) != 2:
                raise ValueError(f"--binary: {config['data_dir']} holds {len(folder.classes)} classes "
                                 f"({', '.join(folder.classes)}); a single logit separates two")
            config["num_classes"] = 1
    net = build_model(config, device)
    if args.torchvision_weights:
        models.load_torchvision_weights(net, args.torchvision_weights, head=False)
    frozen = models.freeze_features(net) if config.get("freeze_features") else []
    copied = None
    if args.init_from:
        source_state = load(os.path.join(args.init_from, train.CHECKPOINT), device=device)
        rng = backend.generator_state()  # building the source draws numbers: keep the run's own stream
        source = build_model(source_state["config"], device).load_state_dict(source_state["model"])
        backend.set_generator_state(rng)
        copied = models.init_from(source, net)
        del source, source_state
    if folder is None:
        train_loader, test_loader = data.load_data_fashion_mnist(
            config["batch_size"], resize=config["resize"], device=device, root=args.data, seed=config["seed"],
            train_limit=args.train_limit, limit_batches=args.limit_batches)
    augment_loaders(config, train_loader, test_loader)
    optimizer, scheduler = build_optimizer(net, config, len(train_loader))
    start, history = 0, None
    if args.resume:
        start, history = train.restore(args.resume, net, optimizer, scheduler, device=device)
    remaining = config["epochs"] - start
    if remaining <= 0:
        print(f"nothing to do: the run already has {start} of {config['epochs']} epochs (raise --epochs)")
        return 0
    nesterov = "Nesterov " if config["nesterov"] and config["momentum"] else ""
    update = (f"Adam lr {config['lr']}" if config["optimizer"] == "adam"
              else f"SGD lr {config['lr']} {nesterov}momentum {config['momentum']}")
    with_warmup = config["scheduler"] == "cosine" and config["warmup_epochs"]
    warmup = f" after {config['warmup_epochs']} epochs of warmup" if with_warmup else ""
    output = f" (output layer N(0, {config['output_std']}))" if config["output_std"] else ""
    clipped = f", gradient norm clipped at {config['clip_grad_norm']}" if config["clip_grad_norm"] else ""
    dataset = "Fashion-MNIST" if folder is None else (
        f"{config['data_dir']} ({len(folder.classes)} classes, {folder.images.shape[1]} channels; "
        f"{len(train_loader.images)} training and {len(test_loader.images)} held-out images)")
    print(f"training {config['arch']} (channels / {config['ratio']}) on {dataset} at "
          f"{input_size(config)}x{input_size(config)}, batch {config['batch_size']}, {update}, {config['scheduler']} "
          f"schedule{warmup}{clipped}, {config['init']} init{output}, {config['epochs']} epochs on {device}"
          f"{' with TF32 matrix products' if args.tf32 else ''}; run folder {out}", flush=True)
    if describe_augment(config):
        print(describe_augment(config))
    if device == "cpu":
        print(f"cpu: {tiers.get_kernels()} kernels; tuned: {', '.join(tuned) or 'nothing'}")
    if args.resume:
        print(f"resuming after epoch {start}")
    if copied is not None:
        print(f"initialized from {args.init_from}: {', '.join(copied) or 'no layer matched in place and shape'}")
    if args.torchvision_weights:
        print(f"weights: {args.torchvision_weights} (torchvision), a new last dense layer for "
              f"{config['num_classes']} output{'s' if config['num_classes'] > 1 else ''}")
    if frozen:
        trainable = sum(p.size for p in net.parameters() if p.requires_grad)
        print(f"frozen: {', '.join(frozen)} (the convolutional part); {trainable:,} of {net.num_parameters():,} "
              f"parameters train")
    if config.get("binary"):
        print(f"binary: one logit, {config['classes'][1]} when positive, binary cross-entropy")
    monitor = None
    if args.watch_grads:
        from .inspection import GradientMonitor

        monitor = GradientMonitor(net, every=10)  # the update ratio copies the weights: not every step
    try:
        train.fit(net, train_loader, test_loader, optimizer, remaining, scheduler=scheduler, out_dir=out,
                  start_epoch=start, history=history, config=config, progress=not args.no_progress,
                  monitor=monitor, scheduler_per_step=config["scheduler"] == "cosine",
                  clip_grad_norm=config["clip_grad_norm"])
    except train.TrainingDiverged as exc:
        print(f"minivgg train: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(f"run folder {out}: checkpoint.npz, history.json, training.png")
    return 0


def cmd_evaluate(args):
    from . import data, evaluation, load, train

    device = backend.canonical_device(args.device)
    state = load(os.path.join(args.run_dir, train.CHECKPOINT), device=device)
    config = state["config"]
    net = build_model(config, device)
    net.load_state_dict(state["model"])
    mode = "multi-crop" if args.multi_crop else "dense" if args.dense or args.scales else "plain"
    size = input_size(config)
    test_scale = config["resize"]  # Q; above the network's input when the run trained on crops
    scales = None if mode == "plain" else args.scales or [
        evaluation.default_crop_scale(size) if mode == "multi-crop" and test_scale <= size else test_scale]
    # Each mode rescales the original 28x28 images itself, once, to each scale it needs.
    names, images = data.text_labels, "images"
    if config.get("data_dir") or args.data_dir:
        if not config.get("data_dir"):
            raise ValueError(f"--data-dir: the run in {args.run_dir} was trained on Fashion-MNIST, not on a folder")
        folder_config = dict(config, data_dir=os.path.abspath(args.data_dir)) if args.data_dir else config
        test = _folder_data(folder_config, device)[1]  # the held-out part of the run's split
        names, images = list(config["classes"]), f"held-out images of {folder_config['data_dir']}"
    else:
        test = data.DataLoader(data.load_fashion_mnist("test", args.data), 256, device=device)
    augment_loaders(config, test_loader=test, whole_images=mode != "plain")  # the training mean; plain: its crop
    started = time.perf_counter()
    predicted, true = evaluation.predict(net, test, mode, size=size, scales=scales, grid=args.grid,
                                         flips=args.flip and mode != "plain")
    grid = f" {args.grid}x{args.grid} crops" if mode == "multi-crop" else ""
    how = "" if mode == "plain" else (f", {mode}{grid} at {' '.join(map(str, scales))}"
                                      f"{' with flips' if args.flip else ''}")
    print(f"test accuracy {float((predicted == true).mean()):.4f} on {len(true)} {images} "
          f"({state['epoch']} epochs of {config['arch']}{how}; {time.perf_counter() - started:.1f} sec)")
    confusion = _confusion(true, predicted, len(names))
    width = max(12, *map(len, names))
    print(f"{'class':<{width}} {'accuracy':>9}")
    for c, name in enumerate(names):
        print(f"{name:<{width}} {confusion[c, c] / max(confusion[c].sum(), 1):>9.3f}")
    path = os.path.join(args.run_dir, "confusion.png")
    _plot_confusion(confusion, names, path)
    print(f"confusion matrix: {path}")
    return 0


def _confusion(true, predicted, classes):
    import numpy as np

    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (true, predicted), 1)
    return matrix


def _plot_confusion(confusion, names, path):
    from .plotting import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    image = ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=6,
                    color="white" if confusion[i, j] > confusion.max() / 2 else "black")
    fig.colorbar(image)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cmd_summary(args):
    from . import models, summary

    net = models.build(args.arch, args.ratio, num_classes=args.classes, in_channels=args.in_channels)
    summary(net, (1, args.in_channels, args.resize, args.resize), per_layer=args.per_layer)
    return 0


def cmd_inspect(args):
    """A run's network (its own data: Fashion-MNIST's test images or its folder's held-out ones, with its
    crop and normalization), or a fresh one of --arch: one batch's layer table and the graph of its loss."""
    from . import data, load, manual_seed, train
    from .inspection import draw_graph, layer_table

    config = {"arch": args.arch, "ratio": args.ratio, "resize": args.resize}
    if args.run:
        state = load(os.path.join(args.run, train.CHECKPOINT), device=args.device)
        config = dict(state["config"], batch_size=args.batch_size)
    manual_seed(0)
    net = build_model(config, args.device)
    if args.run:
        net.load_state_dict(state["model"])
    if config.get("data_dir"):
        loader, source = _folder_data(config, args.device)[1], f"held-out images of {config['data_dir']}"
    else:
        loader, source = data.DataLoader(data.load_fashion_mnist("test", args.data), args.batch_size,
                                         device=args.device, resize=input_size(config)), "test images"
    augment_loaders(config, test_loader=loader)  # a run's own centre crop and normalization
    images, labels = next(iter(loader))
    size = input_size(config)
    print(f"one batch of {len(labels)} {source} at {size}x{size} through {config['arch']} (channels / "
          f"{config['ratio']})" + (f", weights of {args.run}" if args.run else ""))
    net.eval()  # dropout off, so the table is repeatable
    layer_table(net, images, labels)
    loss = train.classification_loss(net(images), labels)
    path = draw_graph(loss, os.path.join(args.out or args.run or ".", "graph.svg"), params=net)
    print(f"graph: {path}")
    return 0


def cmd_doctor(args):
    from . import doctor

    return doctor.run(args.device, size=args.size, batch=args.batch)


def _run_folder_problem(path, hint):
    """None if `path` holds a run's checkpoint, else what is wrong with it (and what to do: `hint`)."""
    if not os.path.exists(path):
        return f"no run folder at {path} ({hint})"
    if not os.path.isdir(path):
        return f"{path} is a file, not a run folder (give the folder that holds {CHECKPOINT})"
    if os.path.exists(os.path.join(path, CHECKPOINT)):
        return None
    if os.path.exists(os.path.join(path, INTERRUPTED)):
        return (f"{path} has no {CHECKPOINT}, only {INTERRUPTED}: the run was stopped during its first epoch "
                f"({hint})")
    return f"{path} has no {CHECKPOINT} ({hint})"


def _image_folder_problem(path):
    """None if `path` can be read as an image folder (a sub-folder per class, two classes at least, and
    Pillow installed to decode them), else what is wrong."""
    from . import data

    if not os.path.exists(path):
        return f"no folder at {path}"
    if not os.path.isdir(path):
        return f"{path} is a file, not a folder of class sub-folders"
    classes = data.class_folders(path)
    if not classes:
        return f"{path} has no class sub-folders (put each class's PNG or JPEG images in a sub-folder named after it)"
    if len(classes) < 2:
        return f"{path} has one class sub-folder ({classes[0]}); a classifier needs two at least"
    try:
        data._pillow()
    except ImportError as exc:
        return str(exc)
    return None


# What a run on an image folder adds to its config, so that --resume and `evaluate` read the same images.
FOLDER_KEYS = ("data_dir", "val_split", "classes", "in_channels", "num_classes")
# How a run started from other weights or with a single logit; kept in its config, so a resumed run and
# `minivgg evaluate` rebuild the same network and freeze the same layers.
TRANSFER_KEYS = ("torchvision_weights", "freeze_features", "binary")
PRETRAINED = ("A", "B", "D", "E")  # the configurations torchvision publishes weights for (no batch norm)


def _folder_data(config, device, train_limit=None, limit_batches=None):
    """(training loader, held-out loader, ImageFolder) of a run on the image folder config['data_dir']: the
    images read at the run's input size and split as (val_split, seed) say, so a resumed run and `evaluate`
    see the same held-out images. A folder whose classes differ from those the run recorded is refused."""
    from . import data

    if not os.path.isdir(config["data_dir"]):
        raise ValueError(f"the run's image folder {config['data_dir']} is gone: give its new place with --data-dir")
    folder = data.ImageFolder(config["data_dir"], size=config["resize"])
    if config.get("classes") and folder.classes != list(config["classes"]):
        raise ValueError(f"{config['data_dir']} holds the classes {', '.join(folder.classes)}; the run was trained "
                         f"on {', '.join(config['classes'])}")
    (train_x, train_y), held_out = data.split(folder, config["val_split"], config["seed"])
    if train_limit:
        train_x, train_y = train_x[:train_limit], train_y[:train_limit]
    common = dict(device=device, seed=config["seed"], limit_batches=limit_batches)
    return (data.DataLoader((train_x, train_y), config["batch_size"], shuffle=True, **common),
            data.DataLoader(held_out, config["batch_size"], **common), folder)


def _folder_problem(path):
    """None if files can be written into the folder `path` (which may not exist yet), else why not. Tried for
    real (os.access says yes to root even on a read-only file system), and undone: a folder this creates
    is removed again, with any parents it created."""
    if os.path.exists(path) and not os.path.isdir(path):
        return f"{path} is a file, not a folder"
    created, folder = [], os.path.abspath(path)
    while not os.path.exists(folder):
        created.append(folder)
        folder = os.path.dirname(folder)
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        return f"cannot write into {path} ({exc.strerror or exc})"
    finally:
        for folder in created:  # the deepest first; rmdir never removes a folder that holds anything
            try:
                os.rmdir(folder)
            except OSError:
                break
    return None


def _check_args(parser, args):
    """The checks that need more than one option or the file system; argparse's usage error on failure."""
    command = args.command
    if command == "train":
        _check_transfer(parser, args)
    arch = getattr(args, "arch", None)
    if arch is not None:
        blocks = _blocks(arch)
        narrowest = min(min(block) for block in blocks)
        if args.ratio > narrowest:
            parser.error(f"argument --ratio: must be an integer from 1 to {narrowest} with --arch {arch} (its "
                         f"narrowest convolution has {narrowest} channels; {narrowest} // {args.ratio} = 0), "
                         f"got {args.ratio}")
        smallest = 2 ** len(blocks)  # every block ends in a 2x2 max-pooling of stride 2
        if args.resize is not None and args.resize < smallest:
            parser.error(f"argument --resize: must be an integer >= {smallest} with --arch {arch} (its "
                         f"{len(blocks)} max-poolings halve the input {len(blocks)} times: {smallest} -> 1), "
                         f"got {args.resize}")
        if command == "train":
            _check_augment(parser, args, smallest)
    if getattr(args, "data", None) and not os.path.isdir(args.data):
        parser.error(f"argument --data: no folder at {args.data}")
    if getattr(args, "data_dir", None):
        problem = _image_folder_problem(args.data_dir)
        if problem:
            parser.error(f"argument --data-dir: {problem}")
        if command == "train" and args.data:
            parser.error("argument --data-dir: not allowed with --data (the folder of the Fashion-MNIST files)")
    if getattr(args, "val_split", None) is not None and (args.resume or not args.data_dir):
        parser.error("argument --val-split: only with --data-dir, when a run starts (a resumed run keeps its "
                     "split)")
    device = _device_of(args)
    if device != "cpu" and backend.cuda_is_available():  # without CUDA the command says why when it starts
        problem = backend.device_problem(device)
        if problem:
            parser.error(f"argument --device: {problem}")
    if command == "train":
        if args.tf32 and device == "cpu":
            parser.error("argument --tf32: TF32 is a mode of NVIDIA GPUs (Ampere or newer); the CPU always "
                         "multiplies in full float32. Use it with --device cuda")
        if args.resume:
            problem = _run_folder_problem(args.resume, f"start a run with minivgg train --out {args.resume}")
            if problem:
                parser.error(f"argument --resume: {problem}")
        if args.init_from:
            if args.resume:
                parser.error("argument --init-from: not allowed with --resume (a resumed run continues from its "
                             "own weights)")
            problem = _run_folder_problem(args.init_from, f"train one into it with minivgg train --out "
                                                          f"{args.init_from}")
            if problem:
                parser.error(f"argument --init-from: {problem}")
        out = args.resume or args.out or "runs"
        problem = _folder_problem(out)
        if problem:
            parser.error(f"argument {'--resume' if args.resume else '--out'}: {problem}")
    elif command == "evaluate":
        problem = _run_folder_problem(args.run_dir, f"train into it with minivgg train --out {args.run_dir}")
        if problem:
            parser.error(problem)
        if args.scales:
            _check_scales(parser, args)
    elif command == "inspect":
        if args.run:
            problem = _run_folder_problem(args.run, f"train into it with minivgg train --out {args.run}")
            if problem:
                parser.error(f"argument --run: {problem}")
        if args.out and not os.path.isdir(args.out):
            parser.error(f"argument --out: no folder at {args.out}")
    elif command == "doctor":
        if args.device == "cpu":
            parser.error("argument --device: doctor checks a GPU: give cuda or cuda:N")
        if args.size < 32:
            parser.error(f"argument --size: must be an integer >= 32 (VGG's five max-poolings halve the input five "
                         f"times: 32 -> 1), got {args.size}")


def _check_transfer(parser, args):
    """--torchvision-weights, --freeze-features and --binary; fills the defaults --torchvision-weights implies
    (ratio 1, input 224: the shapes the ImageNet weights have) and ratio 4 otherwise."""
    if args.ratio is None:
        args.ratio = 1 if args.torchvision_weights else 4
    if args.resume:
        for option, value in (("--torchvision-weights", args.torchvision_weights),
                              ("--freeze-features", args.freeze_features), ("--binary", args.binary)):
            if value is not None:
                parser.error(f"argument {option}: not allowed with --resume (a resumed run keeps the setting it "
                             f"started with)")
    if args.binary and not args.data_dir:
        parser.error("argument --binary: only with --data-dir, a folder of two classes (Fashion-MNIST has ten)")
    if not args.torchvision_weights:
        return
    if args.init_from:
        parser.error("argument --torchvision-weights: not allowed with --init-from (both give the starting "
                     "weights)")
    if models.ALIASES.get(str(args.arch).lower(), str(args.arch).upper()) not in PRETRAINED:
        parser.error(f"argument --torchvision-weights: torchvision's weights fit --arch A, B, D or E (vgg11, vgg13, "
                     f"vgg16, vgg19), got {args.arch}")
    if not os.path.isfile(args.torchvision_weights):
        parser.error(f"argument --torchvision-weights: no file at {args.torchvision_weights}")
    if args.resize is None and not args.crop and not args.scale_jitter:
        args.resize = 224


def _check_scales(parser, args):
    """Each --scales value fits the run's network: at least its smallest input, and with --multi-crop at least
    its input size (the crops). Reads only the run's config, not its arrays; an unreadable checkpoint is
    left to the command, which names the problem."""
    import json

    import numpy as np

    from .serialization import _JSON_KEY

    try:
        with np.load(os.path.join(args.run_dir, CHECKPOINT), allow_pickle=False) as saved:
            config = {key.split("/", 1)[1]: value for key, value in json.loads(str(saved[_JSON_KEY])).items()
                      if key.startswith("config/")}
        blocks, crop = _blocks(config["arch"]), int(config.get("crop") or config["resize"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    if blocks is None:
        return
    smallest = 2 ** len(blocks)  # every block ends in a 2x2 max-pooling of stride 2
    for q in args.scales:
        if q < smallest:
            parser.error(f"argument --scales: each must be an integer >= {smallest} with --arch {config['arch']} "
                         f"(its {len(blocks)} max-poolings halve the input {len(blocks)} times: {smallest} -> 1), "
                         f"got {q}")
        if args.multi_crop and q < crop:
            parser.error(f"argument --scales: with --multi-crop each must be an integer >= {crop} (the crops "
                         f"are the network's input, {crop}x{crop}), got {q}")


def _check_augment(parser, args, smallest):
    """The crop against the network and the scales, as cmd_train will have them (explicit options, then the
    --recipe preset, then the device's defaults)."""
    jitter = args.scale_jitter
    if jitter and jitter[0] > jitter[1]:
        parser.error(f"argument --scale-jitter: MIN must be <= MAX, got {jitter[0]} {jitter[1]}")
    config = fill_defaults({k: getattr(args, k) for k in MODEL_KEYS}, _device_of(args))
    crop, jitter = config["crop"], config["scale_jitter"]
    if crop is None:
        return
    if crop < smallest:
        parser.error(f"argument --crop: must be an integer >= {smallest} with --arch {args.arch} (the crop is the "
                     f"network's input: {smallest} -> 1 through its max-poolings), got {crop}")
    if jitter and crop > jitter[0]:
        parser.error(f"argument --crop: must be at most the smallest scale, --scale-jitter MIN = {jitter[0]} (a "
                     f"crop must fit in every rescaled image), got {crop}")
    if crop > config["resize"]:
        parser.error(f"argument --crop: must be at most the scale --resize = {config['resize']} (the images are "
                     f"rescaled to it, then cropped; raise --resize), got {crop}")


def _device_of(args):
    """The device a command computes on ('cpu' for a command without --device)."""
    if args.command not in ("train", "evaluate", "inspect"):
        return "cpu"
    return backend.canonical_device(args.device)


def main(argv=None):
    """Parse and check the command line (a mistake ends in argparse's usage error, exit code 2, before
    anything runs), then run the command; an error while it runs is one line on stderr, exit code 1."""
    parser = build_parser()
    args = parser.parse_args(argv)
    commands = {"train": cmd_train, "evaluate": cmd_evaluate, "summary": cmd_summary, "inspect": cmd_inspect,
                "doctor": cmd_doctor}
    if args.command is None:
        parser.print_help()
        return 0
    _check_args(parser.commands[args.command], args)
    if argv is None and args.command == "train" and args.device == "cpu":  # the command line, not a test's call
        from . import cpu

        cpu.restart_with_blas_settings(["-m", "minivgg", *sys.argv[1:]])
    try:
        with backend.use_device(_device_of(args)):  # CuPy computes on its current device: make it the chosen one
            return commands[args.command](args)
    except (RuntimeError, ValueError, OSError, KeyError, MemoryError, ImportError) as exc:
        if os.environ.get("MINIVGG_DEBUG"):
            raise
        hint = " (out of memory: lower --batch-size or --resize)" if isinstance(exc, MemoryError) else ""
        print(f"minivgg {args.command}: error: {exc}{hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
