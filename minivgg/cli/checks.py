"""Checks of the command line. Each fails with argparse's usage error (exit code 2) naming the option and what
it accepts, before anything is printed, created or restarted. The per-value checks are `type=` functions the
parser uses; those that need two options or the file system are in `check_args`, which main() runs."""
import argparse
import math
import os

from .. import backend, models
from ..config import DATA_FLAGS, FLAGS, RunConfig, resume_conflicts
from .folders import folder_problem, held_run, image_folder_problem, run_folder_problem, taken_message


# ---- one value: type= functions -------------------------------------------------------------------------
def integer(minimum):
    """type=: an integer >= minimum."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text}")
        return value

    return parse


def number(rule, accepts):
    """type=: a finite float for which accepts(value) holds; `rule` says which, e.g. '> 0' or 'in [0, 1)'."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and accepts(value)):
            raise argparse.ArgumentTypeError(f"must be a finite number {rule}, got {text}")
        return value

    return parse


def device(text):
    """type=: cpu, cuda or cuda:N, canonical ('cuda' -> 'cuda:0')."""
    try:
        return backend.canonical_device(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be cpu, cuda or cuda:N, got {text!r}") from None


ARCH_NAMES = ("d2l", *models.CONFIGS, *models.ALIASES)
PRETRAINED = ("A", "B", "D", "E")  # the configurations torchvision publishes weights for (no batch norm)


def blocks(arch):
    """The output channels of each convolution, block by block, of the network `arch` names (as
    models.build reads the name), or None if models.build does not know it."""
    key = models.arch_key(arch)
    if key == "d2l":
        return [[channels] * convs for convs, channels in models.CONV_ARCH]
    if key is None:
        return None
    return [[item[1] if isinstance(item, tuple) else item for item in spec if item != "LRN"]
            for spec in models.CONFIGS[key]]


def arch(text):
    """type=: a name models.build knows (kept as the user wrote it: the run's config holds that)."""
    if blocks(text) is None:
        raise argparse.ArgumentTypeError(f"unknown architecture {text!r}: use one of {', '.join(ARCH_NAMES)}")
    return text


POSITIVE_INT = integer(1)
POSITIVE = number("> 0", lambda v: v > 0)
NON_NEGATIVE = number(">= 0", lambda v: v >= 0)


# ---- several options, or the file system ----------------------------------------------------------------
def device_of(args):
    """The device a command computes on ('cpu' for a command without --device)."""
    if args.command not in ("train", "evaluate", "inspect"):
        return "cpu"
    return backend.canonical_device(args.device)


def flags_config(args):
    """The RunConfig of `minivgg train`'s flags, unset (None) where not given; --data-dir as an absolute path."""
    config = RunConfig(**{name: getattr(args, name) for name in FLAGS + DATA_FLAGS})
    if args.data_dir:
        config.data_dir = os.path.abspath(args.data_dir)
    return config


def check_args(parser, args):
    """The checks that need more than one option or the file system; argparse's usage error on failure."""
    if args.command == "train":
        args.given = given_flags(args)
        args.arch = "d2l" if args.arch is None else args.arch
        args.seed = 0 if args.seed is None else args.seed
        check_transfer(parser, args)
    elif args.command == "inspect":
        check_inspect_model(parser, args)
    if getattr(args, "arch", None) is not None:
        check_model(parser, args)
    check_data(parser, args)
    device = device_of(args)
    if device != "cpu" and backend.cuda_is_available():  # without CUDA the command says why when it starts
        problem = backend.device_problem(device)
        if problem:
            parser.error(f"argument --device: {problem}")
    if args.command == "train":
        check_train(parser, args)
    elif args.command == "evaluate":
        check_evaluate(parser, args)
    elif args.command == "inspect":
        check_inspect(parser, args)
    elif args.command == "doctor":
        check_doctor(parser, args)


def check_model(parser, args):
    """--ratio and --resize against the network --arch names; for train also the crop and scales."""
    arch_blocks = blocks(args.arch)
    narrowest = min(min(block) for block in arch_blocks)
    if args.ratio > narrowest:
        parser.error(f"argument --ratio: must be an integer from 1 to {narrowest} with --arch {args.arch} (its "
                     f"narrowest convolution has {narrowest} channels; {narrowest} // {args.ratio} = 0), "
                     f"got {args.ratio}")
    smallest = 2 ** len(arch_blocks)  # every block ends in a 2x2 max-pooling of stride 2
    if args.resize is not None and args.resize < smallest:
        parser.error(f"argument --resize: must be an integer >= {smallest} with --arch {args.arch} (its "
                     f"{len(arch_blocks)} max-poolings halve the input {len(arch_blocks)} times: {smallest} -> 1), "
                     f"got {args.resize}")
    if args.command == "train":
        check_augment(parser, args, smallest)


def check_data(parser, args):
    """--data, --data-dir and --val-split."""
    if getattr(args, "data", None) and not os.path.isdir(args.data):
        parser.error(f"argument --data: no folder at {args.data}")
    if getattr(args, "data_dir", None):
        problem = image_folder_problem(args.data_dir)
        if problem:
            parser.error(f"argument --data-dir: {problem}")
        if args.command == "train" and args.data:
            parser.error("argument --data-dir: not allowed with --data (the folder of the Fashion-MNIST files)")
    if getattr(args, "val_split", None) is not None and (args.resume or not args.data_dir):
        parser.error("argument --val-split: only with --data-dir, when a run starts (a resumed run keeps its "
                     "split)")


def given_flags(args):
    """The names of the run's settings (RunConfig fields) given on the command line: those not None."""
    given = [name for name in FLAGS + DATA_FLAGS if getattr(args, name, None) is not None]
    return given + (["data_dir"] if args.data_dir else [])


def check_train(parser, args):
    """--tf32, --resume, --init-from and the run folder."""
    if args.tf32 and device_of(args) == "cpu":
        parser.error("argument --tf32: TF32 is a mode of NVIDIA GPUs (Ampere or newer); the CPU always "
                     "multiplies in full float32. Use it with --device cuda")
    if getattr(args, "plateau_split", None) and args.scheduler not in (None, "plateau"):
        parser.error(f"argument --plateau-split: it holds out images for the plateau rule, but --scheduler is "
                     f"{args.scheduler}: add --scheduler plateau or leave --plateau-split out")
    for flag, value in (("--out", args.out), ("--resume", args.resume), ("--init-from", args.init_from)):
        if value is not None and not value.strip():
            parser.error(f"argument {flag}: an empty folder name; give the run folder, e.g. {flag} runs/first")
    if args.data_dir and not (args.out or args.resume) and _inside(os.path.abspath("runs"), args.data_dir):
        parser.error(f"argument --data-dir: the default run folder runs/ would be inside the image folder "
                     f"{args.data_dir}, where it would read as a class; give --out a folder outside it")
    if args.overwrite and not args.out:
        parser.error("argument --overwrite: only with --out (the run folder to replace; a resumed run is never "
                     "replaced)")
    if args.out and not args.overwrite and os.path.isdir(args.out) and held_run(args.out):
        parser.error(f"argument --out: {taken_message(args.out)}")
    if args.resume:
        problem = run_folder_problem(args.resume, f"start it again with minivgg train --out {args.resume} "
                                                  f"--overwrite")
        if problem:
            parser.error(f"argument --resume: {problem}")
        check_resume(parser, args)
    if args.init_from:
        if args.resume:
            parser.error("argument --init-from: not allowed with --resume (a resumed run continues from its "
                         "own weights)")
        problem = run_folder_problem(args.init_from, f"train one into it with minivgg train --out {args.init_from}")
        if problem:
            parser.error(f"argument --init-from: {problem}")
    problem = folder_problem(args.resume or args.out or "runs")
    if problem:
        parser.error(f"argument {'--resume' if args.resume else '--out'}: {problem}")


def _inside(path, folder):
    """Whether `path` is `folder` or lies under it."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def flag_text(name, value):
    """How the setting `name` = `value` is written on the command line: --lr 0.1, --no-flip, --scale-jitter 36 44."""
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else f"--no-{flag[2:]}"
    if value is None:
        return f"no {flag}"
    if isinstance(value, (list, tuple)):
        return f"{flag} {' '.join(map(str, value))}"
    return f"{flag} {value}"


def check_resume(parser, args):
    """A resumed run keeps its settings: a flag that contradicts the run's saved config is refused."""
    from ..checkpoint import read_config
    from ..serialization import CheckpointError
    from ..runs import CHECKPOINT

    path = os.path.join(args.resume, CHECKPOINT)
    try:
        saved = read_config(path)
    except (OSError, CheckpointError) as exc:
        parser.error(f"argument --resume: {exc}")
    flags = flags_config(args)
    for name, before, given in resume_conflicts(saved, flags, args.given):
        if name == "data_dir":
            parser.error(f"argument --data-dir: the run in {args.resume} was trained on Fashion-MNIST, not on an "
                         f"image folder; start a new run (--out) to train on {args.data_dir}")
        parser.error(f"argument --resume: the run was trained with {flag_text(name, before)}; got "
                     f"{flag_text(name, given)}. A resumed run keeps its settings; start a new run (--out) to "
                     f"change them")


def check_inspect_model(parser, args):
    """inspect --run uses the run's network: a contradicting --arch, --ratio or --resize is refused; without
    --run the defaults are d2l, 4 and 32."""
    given = {name: getattr(args, name) for name in ("arch", "ratio", "resize") if getattr(args, name) is not None}
    if not args.run:
        args.arch, args.ratio, args.resize = given.get("arch", "d2l"), given.get("ratio", 4), given.get("resize", 32)
        return
    from ..checkpoint import read_config
    from ..serialization import CheckpointError
    from ..runs import CHECKPOINT

    if run_folder_problem(args.run, ""):
        return  # check_inspect names it
    try:
        saved = read_config(os.path.join(args.run, CHECKPOINT))
    except (OSError, CheckpointError) as exc:
        parser.error(f"argument --run: {exc}")
    for name, before, value in resume_conflicts(saved, RunConfig(**given), list(given)):
        parser.error(f"argument {flag_text(name, value).split()[0]}: the run in {args.run} was trained with "
                     f"{flag_text(name, before)}; got {flag_text(name, value)} (inspect --run uses the run's "
                     f"network: leave it out)")
    args.arch, args.ratio = saved.get("arch", "d2l"), saved.get("ratio", 4)


def check_evaluate(parser, args):
    problem = run_folder_problem(args.run_dir, f"train into it with minivgg train --out {args.run_dir}")
    if problem:
        parser.error(problem)
    if args.scales:
        check_scales(parser, args)


def check_inspect(parser, args):
    if args.run:
        problem = run_folder_problem(args.run, f"train into it with minivgg train --out {args.run}")
        if problem:
            parser.error(f"argument --run: {problem}")
    if args.out and not os.path.isdir(args.out):
        parser.error(f"argument --out: no folder at {args.out}")


def check_doctor(parser, args):
    if args.device == "cpu":
        parser.error("argument --device: doctor checks a GPU: give cuda or cuda:N")
    if args.size < 32:
        parser.error(f"argument --size: must be an integer >= 32 (VGG's five max-poolings halve the input five "
                     f"times: 32 -> 1), got {args.size}")


def check_transfer(parser, args):
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
    if models.arch_key(args.arch) not in PRETRAINED:
        parser.error(f"argument --torchvision-weights: torchvision's weights fit --arch A, B, D or E (vgg11, vgg13, "
                     f"vgg16, vgg19), got {args.arch}")
    if not os.path.isfile(args.torchvision_weights):
        parser.error(f"argument --torchvision-weights: no file at {args.torchvision_weights}")
    if args.resize is None and not args.crop and not args.scale_jitter:
        args.resize = 224


def check_scales(parser, args):
    """Each --scales value fits the run's network: at least its smallest input, and with --multi-crop at least
    its input size (the crops). Reads only the run's config, not its arrays; an unreadable checkpoint is
    left to the command, which names the problem."""
    from ..checkpoint import read_config
    from ..runs import CHECKPOINT

    try:
        config = RunConfig.from_dict(read_config(os.path.join(args.run_dir, CHECKPOINT)))
        crop = int(config.crop or config.resize)
    except (OSError, ValueError, TypeError):
        return
    arch_blocks = blocks(config.arch)
    smallest = 2 ** len(arch_blocks)  # every block ends in a 2x2 max-pooling of stride 2
    for q in args.scales:
        if q < smallest:
            parser.error(f"argument --scales: each must be an integer >= {smallest} with --arch {config.arch} "
                         f"(its {len(arch_blocks)} max-poolings halve the input {len(arch_blocks)} times: "
                         f"{smallest} -> 1), got {q}")
        if args.multi_crop and q < crop:
            parser.error(f"argument --scales: with --multi-crop each must be an integer >= {crop} (the crops "
                         f"are the network's input, {crop}x{crop}), got {q}")


def check_augment(parser, args, smallest):
    """The crop against the network and the scales, as the run will have them (explicit options, then the
    --recipe preset, then the device's defaults)."""
    jitter = args.scale_jitter
    if jitter and jitter[0] > jitter[1]:
        parser.error(f"argument --scale-jitter: MIN must be <= MAX, got {jitter[0]} {jitter[1]}")
    config = flags_config(args).fill_defaults(device_of(args))
    crop, jitter = config.crop, config.scale_jitter
    if crop is None:
        return
    if crop < smallest:
        parser.error(f"argument --crop: must be an integer >= {smallest} with --arch {args.arch} (the crop is the "
                     f"network's input: {smallest} -> 1 through its max-poolings), got {crop}")
    if jitter and crop > jitter[0]:
        parser.error(f"argument --crop: must be at most the smallest scale, --scale-jitter MIN = {jitter[0]} (a "
                     f"crop must fit in every rescaled image), got {crop}")
    if crop > config.resize:
        parser.error(f"argument --crop: must be at most the scale --resize = {config.resize} (the images are "
                     f"rescaled to it, then cropped; raise --resize), got {crop}")
