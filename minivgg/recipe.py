"""The training recipe of `minivgg train`: the network, optimizer and data augmentation a run's config
describes (the CLI, resume and the benchmarks all build them here, so they agree). The config itself, its
defaults per device and the --recipe presets are in config.py (RunConfig); every function here also takes a
config dict of RunConfig's fields, as lessons and tests pass.
"""
from . import models, optim
from .config import DEVICE_DEFAULTS, FALLBACKS, FLAGS, RECIPES, RunConfig, as_run_config  # noqa: F401

# The training pixels' statistics, computed once and kept in the config: a resumed run and `minivgg
# evaluate` rebuild the same loaders from it.
PIXEL_KEYS = ("pixel_mean", "pixel_covariance", "pixel_std")
# The input statistics torchvision's ImageNet weights were trained with (images scaled to [0, 1]).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def fill_defaults(config, device):
    """Fill the unset (None) entries of a run's `config` in place (RunConfig.fill_defaults: the recipe, then
    the device's defaults). Returns `config`; a dict comes back a dict, with every field."""
    if isinstance(config, RunConfig):
        return config.fill_defaults(device)
    config.update(RunConfig.from_dict(config).fill_defaults(device).to_dict())
    return config


def input_size(config):
    """The side of the network's input: the crop, else the resize."""
    config = as_run_config(config)
    return config.crop or config.resize


def build_augment(config, train_images=None):
    """(training, evaluation) augment.Augment a run's `config` asks for, or (None, None). The per-channel
    mean and covariance of the pixels are computed from `train_images` (uint8) into config's PIXEL_KEYS
    when needed and not there yet, so a resumed run and `minivgg evaluate` reuse them."""
    from . import augment

    run = as_run_config(config)
    shift, subtract = run.intensity_shift or 0.0, bool(run.subtract_mean)
    if not (run.crop or shift or subtract):
        return None, None
    if (subtract and run.pixel_mean is None) or (shift and run.pixel_covariance is None):
        if train_images is None:
            raise ValueError("the run subtracts the training mean or shifts colours but its config holds no "
                             "pixel statistics")
        mean, covariance = augment.pixel_statistics(train_images)
        if run.pixel_mean is None:  # a mean given with pretrained weights (ImageNet's) stays
            run.pixel_mean = mean.tolist()
        run.pixel_covariance = covariance.tolist()
        if isinstance(config, dict):  # the caller's dict keeps them too
            config.update(pixel_mean=run.pixel_mean, pixel_covariance=run.pixel_covariance)
    crop = run.crop
    train = augment.Augment(crop=crop, scale=run.resize if crop else None,
                            jitter=run.scale_jitter if crop else None, shift=shift,
                            covariance=run.pixel_covariance if shift else None,
                            mean=run.pixel_mean if subtract else None,
                            std=run.pixel_std if subtract else None)
    return train, train.evaluation()


def augment_loaders(config, train_loader=None, test_loader=None, whole_images=False):
    """Give the loaders the augmentation `config` asks for (build_augment): the training loader random
    crops, scales, flips and shifts; the test loader the centre crop at scale Q (`whole_images`: only the
    mean subtracted, for evaluations that rescale and crop themselves). With a crop the loaders hand the
    stored images to the augmentation unresized, so each is interpolated once."""
    train, evaluation = build_augment(config, train_loader.images if train_loader is not None else None)
    if train_loader is not None:
        train_loader.flip = bool(as_run_config(config).flip)
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
    config, parts = as_run_config(config), []
    if config.crop:
        jitter = config.scale_jitter
        scale = f"a scale in [{jitter[0]}, {jitter[1]}] per batch" if jitter else str(config.resize)
        parts.append(f"random {config.crop}x{config.crop} crops of images rescaled to {scale} (test: "
                     f"centre crop at {config.resize})")
    if config.flip:
        parts.append("flips")
    if config.intensity_shift:
        parts.append(f"colour/intensity shift N(0, {config.intensity_shift})")
    if config.subtract_mean and config.pixel_std:
        parts.append("ImageNet mean subtracted and divided by its std")
    elif config.subtract_mean:
        parts.append("training mean subtracted")
    if config.weight_decay:
        parts.append(f"weight decay {config.weight_decay}")
    if not parts:
        return None
    return f"{config.recipe + ' recipe' if config.recipe else 'data'}: {', '.join(parts)}"


def build_model(config, device, num_classes=None, in_channels=None):
    """The network a run `config` describes, initialized on `device` as its `init` says. Its outputs and
    input channels: the arguments, else the config's `num_classes` and `in_channels` (a run on an image
    folder records them), else Fashion-MNIST's 10 classes of grey images."""
    config = as_run_config(config)
    if config.init is None:
        raise ValueError("build_model: the config sets no init (xavier, normal or kaiming); fill its defaults "
                         "first: config.fill_defaults(device)")
    num_classes = num_classes or config.num_classes or 10
    in_channels = in_channels or config.in_channels or 1
    net = models.build(config.arch, config.ratio, num_classes=num_classes, in_channels=in_channels).to(device)
    size = input_size(config)
    return models.initialize(net, (1, in_channels, size, size), config.init, device=device,
                             output_std=config.output_std or None)


def build_optimizer(net, config, steps_per_epoch):
    """The optimizer (SGD or Adam) and schedule a run `config` describes; cosine (after an optional linear
    warmup) anneals after every batch, down to 0 at the last one."""
    config = as_run_config(config)
    if config.optimizer == "adam":  # momentum does not apply: Adam keeps its own moments
        opt = optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                        nesterov=bool(config.nesterov) and config.momentum > 0)
    kind = config.scheduler or "none"
    if kind == "step":
        return opt, optim.StepLR(opt, step_size=max(1, config.epochs // 3))
    if kind == "cosine":
        warmup = round((config.warmup_epochs or 0) * steps_per_epoch)
        return opt, optim.LambdaLR(opt, optim.warmup_cosine(warmup, config.epochs * steps_per_epoch))
    if kind == "plateau":
        return opt, optim.ReduceLROnPlateau(opt, mode="max", factor=0.1, patience=1)
    return opt, None
