"""The training recipe of `minivgg train`: the defaults per device, and the network and optimizer a run's
config describes (the CLI, resume and the benchmarks all build them here, so they agree).

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
from . import backend, models, optim

DEVICE_DEFAULTS = {
    "cpu": dict(resize=32, epochs=5, batch_size=256, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True,
                init="kaiming", output_std=0.01, scheduler="cosine", warmup_epochs=0.6, clip_grad_norm=5.0),
    "cuda": dict(resize=224, epochs=10, batch_size=128, optimizer="sgd", lr=0.05, momentum=0.0, nesterov=False,
                 init="xavier", output_std=0.0, scheduler="none", warmup_epochs=0.0, clip_grad_norm=0.0),
}
# What a run's config holds: saved in its checkpoint, so a resumed run rebuilds the same network and optimizer.
MODEL_KEYS = ("arch", "ratio", "resize", "init", "output_std", "seed", "batch_size", "optimizer", "lr", "momentum",
              "nesterov", "weight_decay", "scheduler", "warmup_epochs", "epochs", "clip_grad_norm")
# The data recipe's part of the config (with PIXEL_KEYS, the training pixels' statistics computed once): a
# resumed run and `minivgg evaluate` rebuild the same loaders from it. With a crop, `resize` is the scale
# S (Q at test time) and the network's input is the crop (`input_size`).
AUGMENT_KEYS = ("recipe", "crop", "scale_jitter", "flip", "intensity_shift", "subtract_mean")
PIXEL_KEYS = ("pixel_mean", "pixel_covariance", "pixel_std")
# The input statistics torchvision's ImageNet weights were trained with (images scaled to [0, 1]).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
MODEL_KEYS = MODEL_KEYS + AUGMENT_KEYS
# Presets of `minivgg train --recipe NAME`: explicit flags win over them, and they over DEVICE_DEFAULTS.
RECIPES = {
    # Simonyan & Zisserman (2014), section 3.1: SGD with momentum 0.9, batch 256, weight decay 5e-4, lr 0.01
    # divided by 10 when validation accuracy stops improving (here the test set's), Glorot init; random
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
FALLBACKS = dict(weight_decay=0.0, recipe=None, crop=None, scale_jitter=None, flip=False, intensity_shift=0.0,
                 subtract_mean=False)


def fill_defaults(config, device):
    """Fill the unset (None) entries of a run's `config` in place, from its recipe, then the device's
    defaults. Scale jittering without --resize tests at Q = (S_min + S_max) / 2 (the paper's section 4.1)
    and crops to the device's default input size, or S_min if that is smaller. Returns `config`."""
    kind = "cpu" if backend.canonical_device(device) == "cpu" else "cuda"
    preset = RECIPES.get(config.get("recipe")) or {}
    for layer in (preset.get("all", {}), preset.get(kind, {})):
        for key, value in layer.items():
            if config.get(key) is None:
                config[key] = value
    jitter = config.get("scale_jitter")
    if jitter:
        config["scale_jitter"] = [int(jitter[0]), int(jitter[1])]  # as the checkpoint's JSON gives it back
        if config.get("resize") is None:
            config["resize"] = (jitter[0] + jitter[1]) // 2
        if config.get("crop") is None:
            config["crop"] = min(jitter[0], DEVICE_DEFAULTS[kind]["resize"])
    for layer in (DEVICE_DEFAULTS[kind], FALLBACKS):
        for key, value in layer.items():
            if config.get(key) is None:
                config[key] = value
    return config


def input_size(config):
    """The side of the network's input: the crop, else the resize."""
    return config.get("crop") or config["resize"]


def build_augment(config, train_images=None):
    """(training, evaluation) augment.Augment a run's `config` asks for, or (None, None). The per-channel
    mean and covariance of the pixels are computed from `train_images` (uint8) into config's PIXEL_KEYS
    when needed and not there yet, so a resumed run and `minivgg evaluate` reuse them."""
    from . import augment

    shift, subtract = config.get("intensity_shift") or 0.0, bool(config.get("subtract_mean"))
    if not (config.get("crop") or shift or subtract):
        return None, None
    if (subtract and config.get("pixel_mean") is None) or (shift and config.get("pixel_covariance") is None):
        if train_images is None:
            raise ValueError("the run subtracts the training mean or shifts colours but its config holds no "
                             "pixel statistics")
        mean, covariance = augment.pixel_statistics(train_images)
        if config.get("pixel_mean") is None:  # a mean given with pretrained weights (ImageNet's) stays
            config["pixel_mean"] = mean.tolist()
        config["pixel_covariance"] = covariance.tolist()
    crop = config.get("crop")
    train = augment.Augment(crop=crop, scale=config["resize"] if crop else None,
                            jitter=config.get("scale_jitter") if crop else None, shift=shift,
                            covariance=config.get("pixel_covariance") if shift else None,
                            mean=config["pixel_mean"] if subtract else None,
                            std=config.get("pixel_std") if subtract else None)
    return train, train.evaluation()


def augment_loaders(config, train_loader=None, test_loader=None, whole_images=False):
    """Give the loaders the augmentation `config` asks for (build_augment): the training loader random
    crops, scales, flips and shifts; the test loader the centre crop at scale Q (`whole_images`: only the
    mean subtracted, for evaluations that rescale and crop themselves). With a crop the loaders hand the
    stored images to the augmentation unresized, so each is interpolated once."""
    train, evaluation = build_augment(config, train_loader.images if train_loader is not None else None)
    if train_loader is not None:
        train_loader.flip = bool(config.get("flip"))
    if train is None:
        return
    if whole_images:
        from .augment import Augment

        evaluation = Augment(mean=evaluation.mean, std=evaluation.std, train=False)
    for loader, transform in ((train_loader, train), (test_loader, evaluation)):
        if loader is not None:
            loader.augment = transform
            if transform.crop or transform.scale:
                loader.resize = None


def describe_augment(config):
    """One line for the banner: the recipe's data augmentation and weight decay, or None without either."""
    parts = []
    if config.get("crop"):
        jitter = config.get("scale_jitter")
        scale = f"a scale in [{jitter[0]}, {jitter[1]}] per batch" if jitter else str(config["resize"])
        parts.append(f"random {config['crop']}x{config['crop']} crops of images rescaled to {scale} (test: "
                     f"centre crop at {config['resize']})")
    if config.get("flip"):
        parts.append("flips")
    if config.get("intensity_shift"):
        parts.append(f"colour/intensity shift N(0, {config['intensity_shift']})")
    if config.get("subtract_mean") and config.get("pixel_std"):
        parts.append("ImageNet mean subtracted and divided by its std")
    elif config.get("subtract_mean"):
        parts.append("training mean subtracted")
    if config.get("weight_decay"):
        parts.append(f"weight decay {config['weight_decay']}")
    if not parts:
        return None
    return f"{config['recipe'] + ' recipe' if config.get('recipe') else 'data'}: {', '.join(parts)}"


def build_model(config, device, num_classes=None, in_channels=None):
    """The network a run `config` (a dict of MODEL_KEYS) describes, initialized on `device`. Its outputs and
    input channels: the arguments, else the config's `num_classes` and `in_channels` (a run on an image
    folder records them), else Fashion-MNIST's 10 classes of grey images."""
    num_classes = num_classes or config.get("num_classes") or 10
    in_channels = in_channels or config.get("in_channels") or 1
    net = models.build(config["arch"], config["ratio"], num_classes=num_classes, in_channels=in_channels).to(device)
    size = input_size(config)
    return models.initialize(net, (1, in_channels, size, size), config.get("init", "xavier"),
                             device=device, output_std=config.get("output_std") or None)


def build_optimizer(net, config, steps_per_epoch):
    """The optimizer (SGD or Adam) and schedule a run `config` describes; cosine (after an optional linear
    warmup) anneals after every batch, down to 0 at the last one."""
    if config.get("optimizer") == "adam":  # momentum does not apply: Adam keeps its own moments
        opt = optim.Adam(net.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    else:
        opt = optim.SGD(net.parameters(), lr=config["lr"], momentum=config["momentum"],
                        weight_decay=config["weight_decay"],
                        nesterov=bool(config.get("nesterov")) and config["momentum"] > 0)
    kind = config.get("scheduler") or "none"
    if kind == "step":
        return opt, optim.StepLR(opt, step_size=max(1, config["epochs"] // 3))
    if kind == "cosine":
        warmup = round((config.get("warmup_epochs") or 0) * steps_per_epoch)
        return opt, optim.LambdaLR(opt, optim.warmup_cosine(warmup, config["epochs"] * steps_per_epoch))
    if kind == "plateau":
        return opt, optim.ReduceLROnPlateau(opt, mode="max", factor=0.1, patience=1)
    return opt, None
