"""The `minivgg` command (also `python -m minivgg`):

    minivgg train [--device cpu|cuda] [--epochs N] [--resume RUN_DIR] ...   train VGG on Fashion-MNIST
    minivgg evaluate RUN_DIR                                                 test accuracy, per class, confusion
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

from . import backend, models
from .recipe import DEVICE_DEFAULTS, MODEL_KEYS, build_model, build_optimizer
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
    p.add_argument("--ratio", type=POSITIVE_INT, default=ratio,
                   help="divide every convolution's channels by this (at most 64: each keeps at least one)")


def build_parser():
    parser = argparse.ArgumentParser(prog="minivgg", description="VGG from scratch on NumPy (CPU) or CuPy (GPU).")
    sub = parser.add_subparsers(dest="command")

    train = sub.add_parser("train", help="train VGG on Fashion-MNIST")
    _add_model_args(train)
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
    train.add_argument("--weight-decay", type=NON_NEGATIVE, default=0.0, help="L2 penalty (default 0)")
    train.add_argument("--scheduler", choices=["none", "step", "cosine", "plateau"],
                       help=defaults("scheduler", "learning-rate schedule; cosine anneals after every batch"))
    train.add_argument("--warmup-epochs", type=NON_NEGATIVE,
                       help=defaults("warmup_epochs", "with cosine: raise the rate linearly over this many "
                                                      "epochs first"))
    train.add_argument("--clip-grad-norm", type=NON_NEGATIVE, metavar="MAX",
                       help=defaults("clip_grad_norm", "scale each step's gradients to a joint norm of at most "
                                                       "MAX; 0: off"))
    train.add_argument("--init", choices=["xavier", "normal", "kaiming"],
                       help=defaults("init", "weight initialization"))
    train.add_argument("--output-std", type=NON_NEGATIVE,
                       help=defaults("output_std", "draw the output layer's weights from N(0, STD); 0: like "
                                                   "the other layers"))
    train.add_argument("--device", type=_device, default="cpu", help="cpu, cuda or cuda:N")
    train.add_argument("--tf32", action="store_true",
                       help="GPU only: let float32 matrix products (convolutions, linear layers) use TF32 tensor "
                            "cores on NVIDIA Ampere or newer, faster with inputs rounded to a 10-bit mantissa; "
                            "off by default (sets CUPY_TF32=1 for this run)")
    train.add_argument("--seed", type=_integer(0), default=0)
    folder = train.add_mutually_exclusive_group()
    folder.add_argument("--out", help="run folder (default runs/<date-time>)")
    folder.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last epoch")
    train.add_argument("--limit-batches", type=POSITIVE_INT, help="use only N batches per epoch (quick runs)")
    train.add_argument("--train-limit", type=POSITIVE_INT, help="use only the first N training images")
    train.add_argument("--data", help="folder holding the Fashion-MNIST files")
    train.add_argument("--watch-grads", action="store_true", help="record gradient statistics and plot them")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    evaluate = sub.add_parser("evaluate", help="test accuracy, per-class table and confusion matrix of a run")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--device", type=_device, default="cpu")
    evaluate.add_argument("--data")

    summary = sub.add_parser("summary", help="print the per-block output shapes and parameter counts")
    _add_model_args(summary, arch="vgg11", ratio=1)
    summary.add_argument("--resize", type=POSITIVE_INT, default=224)
    summary.add_argument("--in-channels", type=POSITIVE_INT, default=1)
    summary.add_argument("--classes", type=POSITIVE_INT, default=10)

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
    defaults = DEVICE_DEFAULTS["cpu" if device == "cpu" else "cuda"]
    config = {k: getattr(args, k) for k in MODEL_KEYS}
    if args.resume:
        saved = load(os.path.join(args.resume, train.CHECKPOINT))["config"]
        config = {k: (config[k] if k == "epochs" and config[k] else saved.get(k, config[k])) for k in MODEL_KEYS}
        out = args.resume
    else:
        out = args.out or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
    for key, value in defaults.items():
        if config.get(key) is None:
            config[key] = value
    manual_seed(config["seed"])
    net = build_model(config, device)
    train_loader, test_loader = data.load_data_fashion_mnist(
        config["batch_size"], resize=config["resize"], device=device, root=args.data, seed=config["seed"],
        train_limit=args.train_limit, limit_batches=args.limit_batches)
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
    print(f"training {config['arch']} (channels / {config['ratio']}) on Fashion-MNIST at "
          f"{config['resize']}x{config['resize']}, batch {config['batch_size']}, {update}, {config['scheduler']} "
          f"schedule{warmup}{clipped}, {config['init']} init{output}, {config['epochs']} epochs on {device}"
          f"{' with TF32 matrix products' if args.tf32 else ''}; run folder {out}", flush=True)
    if device == "cpu":
        print(f"cpu: {backend.get_kernels()} kernels; tuned: {', '.join(tuned) or 'nothing'}")
    if args.resume:
        print(f"resuming after epoch {start}")
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
    from . import data, load, train

    device = backend.canonical_device(args.device)
    state = load(os.path.join(args.run_dir, train.CHECKPOINT), device=device)
    config = state["config"]
    net = build_model(config, device)
    net.load_state_dict(state["model"])
    test = data.DataLoader(data.load_fashion_mnist("test", args.data), 256, device=device, resize=config["resize"])
    predicted, true = train.predict(net, test)
    print(f"test accuracy {float((predicted == true).mean()):.4f} on {len(true)} images "
          f"({state['epoch']} epochs of {config['arch']})")
    confusion = _confusion(true, predicted, 10)
    print(f"{'class':<12} {'accuracy':>9}")
    for c, name in enumerate(data.text_labels):
        print(f"{name:<12} {confusion[c, c] / max(confusion[c].sum(), 1):>9.3f}")
    path = os.path.join(args.run_dir, "confusion.png")
    _plot_confusion(confusion, data.text_labels, path)
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
    summary(net, (1, args.in_channels, args.resize, args.resize))
    return 0


def cmd_inspect(args):
    from . import data, functional as F, load, manual_seed, train
    from .inspection import draw_graph, layer_table

    config = {"arch": args.arch, "ratio": args.ratio, "resize": args.resize}
    if args.run:
        state = load(os.path.join(args.run, train.CHECKPOINT), device=args.device)
        config.update({k: state["config"][k] for k in ("arch", "ratio", "resize")})
    manual_seed(0)
    net = build_model(config, args.device)
    if args.run:
        net.load_state_dict(state["model"])
    images, labels = next(iter(data.DataLoader(data.load_fashion_mnist("test", args.data), args.batch_size,
                                               device=args.device, resize=config["resize"])))
    print(f"one batch of {args.batch_size} test images at {config['resize']}x{config['resize']} through "
          f"{config['arch']} (channels / {config['ratio']})" + (f", weights of {args.run}" if args.run else ""))
    net.eval()  # dropout off, so the table is repeatable
    layer_table(net, images, labels)
    loss = F.cross_entropy(net(images), labels)
    path = draw_graph(loss, os.path.join(args.out or args.run or ".", "graph.svg"), params=net)
    print(f"graph: {path}")
    return 0


def cmd_doctor(args):
    from . import doctor

    return doctor.run(args.device, size=args.size, batch=args.batch)


def _restart_with_a_short_blas_spin():
    """Start this command again with OPENBLAS_THREAD_TIMEOUT set, unless it is set already.

    After each matrix product OpenBLAS's idle threads spin for a long while, taking the cores that the
    fast kernels' threads need; a short spin lets them have the cores. OpenBLAS reads the setting only
    when NumPy loads it, and importing minivgg has loaded NumPy before this code runs, so the command
    re-executes itself once with the setting in its environment. A value the user set wins.
    """
    if "OPENBLAS_THREAD_TIMEOUT" in os.environ or os.name != "posix":
        return
    env = dict(os.environ, OPENBLAS_THREAD_TIMEOUT="10")
    os.execve(sys.executable, [sys.executable, "-m", "minivgg", *sys.argv[1:]], env)


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
    if getattr(args, "data", None) and not os.path.isdir(args.data):
        parser.error(f"argument --data: no folder at {args.data}")
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
        out = args.resume or args.out or "runs"
        problem = _folder_problem(out)
        if problem:
            parser.error(f"argument {'--resume' if args.resume else '--out'}: {problem}")
    elif command == "evaluate":
        problem = _run_folder_problem(args.run_dir, f"train into it with minivgg train --out {args.run_dir}")
        if problem:
            parser.error(problem)
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
        _restart_with_a_short_blas_spin()
    try:
        with backend.use_device(_device_of(args)):  # CuPy computes on its current device: make it the chosen one
            return commands[args.command](args)
    except (RuntimeError, ValueError, OSError, KeyError, MemoryError) as exc:
        if os.environ.get("MINIVGG_DEBUG"):
            raise
        hint = " (out of memory: lower --batch-size or --resize)" if isinstance(exc, MemoryError) else ""
        print(f"minivgg {args.command}: error: {exc}{hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
