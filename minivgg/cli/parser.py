"""The parser of the `minivgg` command: its subcommands and their options. The checks of single values are the
`type=` functions of checks.py; the checks across options run after parsing (checks.check_args)."""
import argparse

from ..config import DEVICE_DEFAULTS, RECIPES
from . import checks


def build_parser():
    """The parser of every subcommand; `parser.commands` maps each name to its subparser (for its usage
    errors, which name the subcommand)."""
    parser = argparse.ArgumentParser(prog="minivgg", description="VGG from scratch on NumPy (CPU) or CuPy (GPU).")
    sub = parser.add_subparsers(dest="command")
    parser.commands = {"train": add_train(sub), "evaluate": add_evaluate(sub), "summary": add_summary(sub),
                       "inspect": add_inspect(sub), "doctor": add_doctor(sub)}
    return parser


def add_model_args(p, arch="d2l", ratio=4):
    p.add_argument("--arch", type=checks.arch, default=arch,
                   help="'d2l' (D2L's VGG-11 with channels / ratio) or a Table 1 name: A, A-LRN, B, C, D, E, "
                        "vgg11, vgg13, vgg16, vgg19")
    default = f"default {ratio}" if ratio else "default 4, or 1 with --torchvision-weights"
    p.add_argument("--ratio", type=checks.POSITIVE_INT, default=ratio,
                   help=f"divide every convolution's channels by this (at most 64: each keeps at least one; "
                        f"{default})")


def _defaults(key, what):
    """A help text naming both devices' defaults, read from DEVICE_DEFAULTS."""
    cpu, gpu = DEVICE_DEFAULTS["cpu"][key], DEVICE_DEFAULTS["cuda"][key]
    return f"{what} (CPU default {cpu}; GPU default {gpu}, as in D2L)"


def add_train(sub):
    train = sub.add_parser("train", help="train VGG on Fashion-MNIST")
    add_model_args(train, ratio=None)
    add_optimizer_args(train)
    add_augment_args(train)
    add_run_args(train)
    add_data_args(train)
    # None: not given, so a resumed run can tell a flag from a default (check_args fills d2l and 0)
    train.set_defaults(arch=None, seed=None)
    return train


def add_optimizer_args(train):
    """The optimization and initialization: unset (None) options take the device's defaults."""
    train.add_argument("--resize", type=checks.POSITIVE_INT, help=_defaults("resize", "input size"))
    train.add_argument("--epochs", type=checks.POSITIVE_INT, help=_defaults("epochs", "total number of epochs"))
    train.add_argument("--batch-size", type=checks.POSITIVE_INT, help=_defaults("batch_size", "examples per step"))
    train.add_argument("--optimizer", choices=["sgd", "adam"], help=_defaults("optimizer", "update rule"))
    train.add_argument("--lr", type=checks.POSITIVE, help=_defaults("lr", "peak learning rate"))
    train.add_argument("--momentum", type=checks.number("in [0, 1)", lambda v: 0 <= v < 1),
                       help=_defaults("momentum", "SGD momentum"))
    train.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None,
                       help=_defaults("nesterov", "Nesterov momentum for SGD"))
    train.add_argument("--weight-decay", type=checks.NON_NEGATIVE, help="L2 penalty (default 0)")
    train.add_argument("--scheduler", choices=["none", "step", "cosine", "plateau"],
                       help=_defaults("scheduler", "learning-rate schedule; cosine anneals after every batch"))
    train.add_argument("--plateau-split", type=checks.number("in [0, 1)", lambda v: 0 <= v < 1),
                       metavar="FRACTION",
                       help="with --scheduler plateau (--recipe paper): hold out this fraction of the training "
                            "images, drawn with --seed, as the validation split whose accuracy the rule watches; "
                            "the test set is only scored (default 0.1; 0: the rule watches the test accuracy)")
    train.add_argument("--warmup-epochs", type=checks.NON_NEGATIVE,
                       help=_defaults("warmup_epochs", "with cosine: raise the rate linearly over this many "
                                                      "epochs first"))
    train.add_argument("--clip-grad-norm", type=checks.NON_NEGATIVE, metavar="MAX",
                       help=_defaults("clip_grad_norm", "scale each step's gradients to a joint norm of at most "
                                                       "MAX; 0: off"))
    train.add_argument("--init", choices=["xavier", "normal", "kaiming"],
                       help=_defaults("init", "weight initialization (normal: N(0, 0.01^2))"))
    train.add_argument("--output-std", type=checks.NON_NEGATIVE,
                       help=_defaults("output_std", "draw the output layer's weights from N(0, STD); 0: like "
                                                   "the other layers"))


def add_augment_args(train):
    """The --recipe preset and the data augmentation."""
    train.add_argument("--recipe", choices=sorted(RECIPES),
                       help="a preset: 'paper' is Simonyan & Zisserman's section 3.1 (SGD lr 0.01 momentum 0.9, "
                            "batch 256, weight decay 5e-4, lr / 10 when the accuracy on a validation split of "
                            "the training images (--plateau-split) stops improving, random crops with scale "
                            "jittering, flips, intensity shift, mean subtraction); the options given explicitly "
                            "win")
    train.add_argument("--crop", type=checks.POSITIVE_INT, metavar="SIZE",
                       help="train on SIZE x SIZE crops at random positions of the images rescaled to --resize "
                            "(their smallest side; the test set: the centre crop); the network's input is SIZE")
    train.add_argument("--scale-jitter", type=checks.POSITIVE_INT, nargs=2, metavar=("MIN", "MAX"),
                       help="rescale each batch to a scale drawn from [MIN, MAX] before cropping (test scale: "
                            "--resize, default (MIN + MAX) / 2; crop: --crop, default the device's input size)")
    train.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                       help="random horizontal flips of the training images (default off)")
    train.add_argument("--intensity-shift", type=checks.NON_NEGATIVE, metavar="SIGMA",
                       help="add to each training image the colour offset of AlexNet's PCA shift with weights "
                            "N(0, SIGMA) (one channel: N(0, SIGMA x the pixels' std)); 0: off (default)")
    train.add_argument("--subtract-mean", action=argparse.BooleanOptionalAction, default=None,
                       help="subtract the training set's per-channel mean from every image (default off)")


def add_run_args(train):
    """Where and how the run computes, its folder and its starting weights."""
    train.add_argument("--device", type=checks.device, default="cpu", help="cpu, cuda or cuda:N")
    train.add_argument("--tf32", action="store_true",
                       help="GPU only: let float32 matrix products (convolutions, linear layers) use TF32 tensor "
                            "cores on NVIDIA Ampere or newer, faster with inputs rounded to a 10-bit mantissa; "
                            "off by default (sets CUPY_TF32=1 for this run)")
    train.add_argument("--seed", type=checks.integer(0), default=0)
    folder = train.add_mutually_exclusive_group()
    folder.add_argument("--out", help="run folder (default runs/<date-time>); one that holds a run is refused "
                                      "unless --overwrite")
    folder.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its last epoch, with its own settings (only "
                             "--epochs may differ, to train further)")
    train.add_argument("--overwrite", action="store_true",
                       help="with --out: replace the run that folder holds (refused without it)")
    train.add_argument("--init-from", metavar="RUN_DIR",
                       help="warm start, as the paper's deeper nets from net A: copy the first four convolutions "
                            "and the dense layers of the run in RUN_DIR where place and shape match")
    train.add_argument("--watch-grads", action="store_true", help="record gradient statistics and plot them")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_data_args(train):
    """Fashion-MNIST or an image folder, how much of it, and transfer from torchvision's weights."""
    train.add_argument("--limit-batches", type=checks.POSITIVE_INT, help="use only N batches per epoch (quick runs)")
    train.add_argument("--train-limit", type=checks.POSITIVE_INT, help="use only the first N training images")
    train.add_argument("--data", help="folder holding the Fashion-MNIST files")
    train.add_argument("--data-dir", metavar="DIR",
                       help="train on your own images instead of Fashion-MNIST: DIR holds one sub-folder per class "
                            "of PNG or JPEG files (needs Pillow: pip install -e \".[images]\")")
    train.add_argument("--val-split", type=checks.number("in (0, 1)", lambda v: 0 < v < 1), metavar="FRACTION",
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


def add_evaluate(sub):
    evaluate = sub.add_parser("evaluate", help="test accuracy, per-class table and confusion matrix of a run")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--device", type=checks.device, default="cpu")
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
    evaluate.add_argument("--scales", type=checks.POSITIVE_INT, nargs="+", metavar="Q",
                          help="test scales: the images are rescaled to QxQ, soft-max scores averaged over the "
                               "scales (dense unless --multi-crop); each at least 32, with --multi-crop at least "
                               "the training size")
    evaluate.add_argument("--grid", type=checks.POSITIVE_INT, default=3,
                          help="--multi-crop: GRID x GRID crop positions")
    evaluate.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                          help="--dense, --scales, --multi-crop: also score each image's horizontal flip")
    return evaluate


def add_summary(sub):
    summary = sub.add_parser("summary", help="print the per-block output shapes and parameter counts")
    add_model_args(summary, arch="vgg11", ratio=1)
    summary.add_argument("--resize", type=checks.POSITIVE_INT, default=224)
    summary.add_argument("--in-channels", type=checks.POSITIVE_INT, default=1)
    summary.add_argument("--classes", type=checks.POSITIVE_INT, default=10)
    summary.add_argument("--per-layer", action="store_true",
                         help="Keras's table: every layer, then total, trainable and non-trainable parameters")
    return summary


def add_inspect(sub):
    inspect = sub.add_parser("inspect", help="one batch: per-layer activation and gradient table, and the graph")
    add_model_args(inspect)
    inspect.add_argument("--resize", type=checks.POSITIVE_INT, default=32)
    # None: not given, so --run can tell a flag from a default (check_args fills d2l, 4 and 32)
    inspect.set_defaults(arch=None, ratio=None, resize=None)
    inspect.add_argument("--batch-size", type=checks.POSITIVE_INT, default=16)
    inspect.add_argument("--run", metavar="RUN_DIR", help="load the weights of this run")
    inspect.add_argument("--out", default=None, help="where to write the graph (default: the run folder or .)")
    inspect.add_argument("--device", type=checks.device, default="cpu")
    inspect.add_argument("--data")
    return inspect


def add_doctor(sub):
    doctor = sub.add_parser("doctor", help="check the GPU path: versions, every kernel against the CPU, a timed "
                                           "training step (run it first on a GPU; send its output with a bug report)")
    doctor.add_argument("--device", type=checks.device, default="cuda", help="the GPU to check: cuda or cuda:N")
    doctor.add_argument("--size", type=checks.POSITIVE_INT, default=224,
                        help="input size of the timed step (at least 32)")
    doctor.add_argument("--batch", type=checks.POSITIVE_INT, default=128, help="batch of the timed step")
    return doctor
