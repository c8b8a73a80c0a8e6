"""A run's config, typed: what `minivgg train` trains with, saved in the run's checkpoint, so a resumed run,
`minivgg evaluate` and `minivgg inspect --run` rebuild the same network, data and optimizer from it.

A field left None is unset: `fill_defaults(device)` fills it from the --recipe preset, then from the
device's defaults, then from FALLBACKS. Explicit values always win.

The defaults are what a newcomer's first run uses. On the CPU the budget is a run of about ten minutes on two
cores, so the input is reduced to 32x32 (the smallest size that survives VGG's five poolings) and the recipe
is the one that did best within that budget (benchmarks/RESULTS.md): He init with the output layer
drawn small (N(0, 0.01), so the first logits are near zero and the first loss is near log 10), SGD with
Nesterov momentum, a linear warmup over the first 0.6 epochs, then a cosine decay after every batch, 5 epochs.
A batch of 256 is cheaper per example than 128 on two cores, which pays for the fifth epoch; at that batch a
rare huge gradient can throw the plain deep network back to its first plateau, so the joint gradient norm is
clipped at 5. On the GPU the defaults are D2L's own setting (224x224, Xavier init, plain SGD at lr 0.05,
batch 128, 10 epochs), so its results can be compared with the book's.
"""
import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

from . import backend, models

DEVICE_DEFAULTS = {
    "cpu": dict(resize=32, epochs=5, batch_size=256, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True,
                init="kaiming", output_std=0.01, scheduler="cosine", warmup_epochs=0.6, clip_grad_norm=5.0),
    "cuda": dict(resize=224, epochs=10, batch_size=128, optimizer="sgd", lr=0.05, momentum=0.0, nesterov=False,
                 init="xavier", output_std=0.0, scheduler="none", warmup_epochs=0.0, clip_grad_norm=0.0),
}
# Presets of `minivgg train --recipe NAME`: explicit flags win over them, and they over DEVICE_DEFAULTS.
RECIPES = {
    # Simonyan & Zisserman (2014), section 3.1: SGD with momentum 0.9, batch 256, weight decay 5e-4, lr 0.01
    # divided by 10 when validation accuracy stops improving (a split of the training images), Glorot init; random
    # crops of images rescaled to S drawn per batch from [S_min, S_max] (the paper: 224 from [256, 512]),
    # flips, AlexNet's colour shift (intensity, for grey images) and the mean subtracted. On the CPU the
    # crop is the default 32 and the scales keep most of a 28x28 garment inside it.
    "paper": {
        "all": dict(batch_size=256, optimizer="sgd", lr=0.01, momentum=0.9, nesterov=False, weight_decay=5e-4,
                    scheduler="plateau", warmup_epochs=0.0, clip_grad_norm=0.0, init="xavier", output_std=0.0,
                    flip=True, intensity_shift=0.1, subtract_mean=True),
        "cpu": dict(crop=32, scale_jitter=(36, 44)),
        "cuda": dict(crop=224, scale_jitter=(256, 512)),
    },
}
# What neither a preset nor the device sets: the plain run (no decay, no augmentation).
FALLBACKS = dict(weight_decay=0.0, recipe=None, crop=None, scale_jitter=None, flip=False, intensity_shift=0.0,
                 subtract_mean=False)


@dataclass
class RunConfig:
    # the network
    arch: str = "d2l"  # 'd2l' (D2L's VGG-11) or a Table 1 name: A, A-LRN, B, C, D, E, vgg11 ... vgg19
    ratio: int = 4  # every convolution's channels divided by this
    resize: Optional[int] = None  # the images' side (with a crop: the scale S, Q at test time)
    init: Optional[str] = None  # weight initialization: xavier, normal or kaiming
    output_std: Optional[float] = None  # the output layer's weights from N(0, std); 0: like the others
    # the optimization
    seed: int = 0  # the random stream: weights, data order, augmentation, the held-out split
    batch_size: Optional[int] = None  # examples per step
    optimizer: Optional[str] = None  # sgd or adam
    lr: Optional[float] = None  # peak learning rate
    momentum: Optional[float] = None  # SGD momentum, in [0, 1)
    nesterov: Optional[bool] = None  # Nesterov momentum for SGD
    weight_decay: Optional[float] = None  # L2 penalty
    scheduler: Optional[str] = None  # none, step, cosine (after every batch) or plateau
    warmup_epochs: Optional[float] = None  # with cosine: linear warmup over this many epochs
    epochs: Optional[int] = None  # total number of epochs
    # with the plateau rule: the fraction of the training images held out (drawn with seed) as the validation
    # split it watches, so the test set never chooses the schedule; 0: it watches the test accuracy
    plateau_split: Optional[float] = None
    clip_grad_norm: Optional[float] = None  # the joint gradient norm clipped at this; 0: off
    # the data augmentation
    recipe: Optional[str] = None  # a preset of RECIPES, e.g. 'paper'
    crop: Optional[int] = None  # train on random crops of this side; the network's input size
    scale_jitter: Optional[list] = None  # [S_min, S_max]: a scale per batch, drawn from this range
    flip: Optional[bool] = None  # random horizontal flips
    intensity_shift: Optional[float] = None  # sigma of AlexNet's PCA colour shift; 0: off
    subtract_mean: Optional[bool] = None  # subtract the training pixels' mean (ImageNet's with its weights)
    # the training pixels' statistics, computed once when the augmentation needs them
    pixel_mean: Optional[list] = None  # per channel, in [0, 1]
    pixel_covariance: Optional[list] = None  # channels x channels
    pixel_std: Optional[list] = None  # per channel: the images are also divided by it (ImageNet weights)
    # a run on an image folder
    data_dir: Optional[str] = None  # the folder of class sub-folders
    val_split: Optional[float] = None  # the fraction held out for the test accuracy, in (0, 1)
    classes: Optional[list] = None  # the class names, as the folder gave them
    in_channels: Optional[int] = None  # the images' channels (default 1, Fashion-MNIST's grey)
    num_classes: Optional[int] = None  # the network's outputs (default 10; 1 with binary)
    train_files: Optional[list] = None  # the training images, 'class/file' under data_dir, as split at the start
    held_out_files: Optional[list] = None  # the held-out images, likewise: evaluate and resume use these
    # how much of the data a run uses (quick runs)
    train_limit: Optional[int] = None  # only the first N training images
    limit_batches: Optional[int] = None  # only N batches per epoch
    # a run started from other weights
    torchvision_weights: Optional[str] = None  # the file of torchvision's ImageNet weights
    freeze_features: bool = False  # only the dense layers learn
    binary: bool = False  # one logit trained with binary cross-entropy

    def fill_defaults(self, device):
        """Fill the unset (None) fields in place, from the recipe, then the device's defaults. Scale jittering
        without a resize tests at Q = (S_min + S_max) / 2 (the paper's section 4.1) and crops to the device's
        default input size, or S_min if that is smaller. Returns self."""
        kind = "cpu" if backend.canonical_device(device) == "cpu" else "cuda"
        preset = RECIPES.get(self.recipe) or {}
        self._fill(preset.get("all", {}))
        self._fill(preset.get(kind, {}))
        if self.scale_jitter:
            self.scale_jitter = [int(self.scale_jitter[0]), int(self.scale_jitter[1])]  # as JSON gives it back
            if self.resize is None:
                self.resize = sum(self.scale_jitter) // 2
            if self.crop is None:
                self.crop = min(self.scale_jitter[0], DEVICE_DEFAULTS[kind]["resize"])
        self._fill(DEVICE_DEFAULTS[kind])
        self._fill(FALLBACKS)
        if self.plateau_split is None:
            self.plateau_split = 0.1 if self.scheduler == "plateau" else 0.0
        return self

    def _fill(self, values):
        for name, value in values.items():
            if getattr(self, name) is None:
                setattr(self, name, value)

    def validate(self):
        """Raise ValueError naming the first field (and its flag) whose value is out of range; unset fields pass.
        Returns self."""
        for name, value in dataclasses.asdict(self).items():
            if value is None or name not in RULES:
                continue
            rule, accepts = RULES[name]
            if not _holds(accepts, value):
                flag = f" (--{name.replace('_', '-')})" if name in FLAGS + DATA_FLAGS else ""
                raise ValueError(f"run config: {name}{flag} must be {rule}, got {value!r}")
        if self.scale_jitter is not None and self.scale_jitter[0] > self.scale_jitter[1]:
            raise ValueError(f"run config: scale_jitter (--scale-jitter) must be [MIN, MAX] with MIN <= MAX, got "
                             f"{self.scale_jitter!r}")
        if self.plateau_split and self.scheduler is not None and self.scheduler != "plateau":
            raise ValueError(f"run config: plateau_split (--plateau-split) holds out images for the plateau rule, "
                             f"but the scheduler is {self.scheduler!r}: add --scheduler plateau or leave it out")
        return self

    def to_dict(self):
        """Every field, as the checkpoint stores it (JSON values)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """A RunConfig from a checkpoint's config dict (or any dict of its fields): a missing field takes its
        default, an unknown one is an error naming it."""
        unknown = sorted(set(values) - set(FIELDS))
        if unknown:
            raise ValueError(f"run config: unknown {'keys' if len(unknown) > 1 else 'key'} {', '.join(unknown)} "
                             f"(a run config holds {', '.join(FIELDS)})")
        config = cls(**values)
        if config.scale_jitter is not None:
            config.scale_jitter = list(config.scale_jitter)
        return config.validate()


FIELDS = tuple(field.name for field in dataclasses.fields(RunConfig))
# The fields `minivgg train` sets from flags of the same name (--batch-size: batch_size).
FLAGS = ("arch", "ratio", "resize", "init", "output_std", "seed", "batch_size", "optimizer", "lr", "momentum",
         "nesterov", "weight_decay", "scheduler", "warmup_epochs", "epochs", "clip_grad_norm", "recipe", "crop",
         "scale_jitter", "flip", "intensity_shift", "subtract_mean", "plateau_split")
# The fields of how much data a run uses, also set from flags of the same name.
DATA_FLAGS = ("train_limit", "limit_batches")


def _known_arch(name):
    return models.arch_key(name) is not None


def _whole(minimum):
    return f"an integer >= {minimum}", lambda v: isinstance(v, int) and v >= minimum


def _finite(rule, accepts):
    return f"a finite number {rule}", lambda v: isinstance(v, (int, float)) and math.isfinite(v) and accepts(v)


def _one_of(*names):
    return f"one of {', '.join(map(str, names))}", lambda v: v in names


def _holds(accepts, value):
    try:
        return bool(accepts(value))
    except (TypeError, ValueError, IndexError):
        return False


# What validate() accepts, field by field: (what it must be, in words; the test).
RULES = dict(
    arch=("a name models.build knows (d2l, A ... E, vgg11 ... vgg19)", _known_arch),
    ratio=_whole(1), resize=_whole(1), seed=_whole(0), batch_size=_whole(1), epochs=_whole(1), crop=_whole(1),
    in_channels=_whole(1), num_classes=_whole(1), train_limit=_whole(1), limit_batches=_whole(1),
    init=_one_of("xavier", "normal", "kaiming"), optimizer=_one_of("sgd", "adam"),
    scheduler=_one_of("none", "step", "cosine", "plateau"), recipe=_one_of(*RECIPES),
    lr=_finite("> 0", lambda v: v > 0), momentum=_finite("in [0, 1)", lambda v: 0 <= v < 1),
    weight_decay=_finite(">= 0", lambda v: v >= 0), warmup_epochs=_finite(">= 0", lambda v: v >= 0),
    clip_grad_norm=_finite(">= 0", lambda v: v >= 0), output_std=_finite(">= 0", lambda v: v >= 0),
    intensity_shift=_finite(">= 0", lambda v: v >= 0), val_split=_finite("in (0, 1)", lambda v: 0 < v < 1),
    plateau_split=_finite("in [0, 1)", lambda v: 0 <= v < 1),
    scale_jitter=("two integers [MIN, MAX], each >= 1",
                  lambda v: len(v) == 2 and all(isinstance(s, int) and s >= 1 for s in v)),
    **{name: ("True or False", lambda v: isinstance(v, bool))
       for name in ("nesterov", "flip", "subtract_mean", "freeze_features", "binary")},
    **{name: ("a text", lambda v: isinstance(v, str)) for name in ("data_dir", "torchvision_weights")},
    **{name: ("a list of texts", lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v))
       for name in ("classes", "train_files", "held_out_files")},
    **{name: ("a list of finite numbers", lambda v: isinstance(v, list) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v))
       for name in ("pixel_mean", "pixel_std")},
    pixel_covariance=("a list of lists of finite numbers", lambda v: isinstance(v, list) and all(
        isinstance(row, list) and all(isinstance(x, (int, float)) and math.isfinite(x) for x in row) for row in v)),
)


def as_run_config(config):
    """`config` as a RunConfig: itself, or one read from a dict of its fields (lessons and tests pass dicts)."""
    return config if isinstance(config, RunConfig) else RunConfig.from_dict(config)


def resume_config(saved, flags):
    """The config a resumed run continues with. Every setting comes from the run's checkpoint (`saved`, its
    config dict), so the run rebuilds the same network, data and optimizer; from the command line (`flags`, a
    RunConfig) only --epochs (to train further), --data-dir (the image folder moved), and the settings the
    checkpoint does not hold."""
    merged = RunConfig.from_dict({**flags.to_dict(), **saved})
    if flags.epochs:
        merged.epochs = flags.epochs
    if flags.data_dir:
        merged.data_dir = flags.data_dir
    if "plateau_split" not in saved and flags.plateau_split is None:
        merged.plateau_split = 0.0  # a run from before the split: its rule keeps watching what it watched
    return merged


def resume_conflicts(saved, flags, given):
    """[(field, the run's value, the flag's value)] of each flag in `given` (the names of the fields set on the
    command line) whose value in `flags` (a RunConfig) differs from the run's config `saved` (a dict): a
    resumed run keeps its settings. --epochs extends a run and --data-dir may name a moved copy: never a
    conflict, but a folder for a run trained on Fashion-MNIST is."""
    conflicts = []
    for name in given:
        value, before = getattr(flags, name), saved.get(name)
        if name == "epochs" or (name == "data_dir" and before) or name not in saved:
            continue  # a field the checkpoint lacks (an older run) takes the flag, as resume_config does
        if not _same(name, before, value):
            conflicts.append((name, before, value))
    return conflicts


def _same(name, a, b):
    if name == "arch":
        return (models.arch_key(a) or str(a)) == (models.arch_key(b) or str(b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-12)
    return a == b
