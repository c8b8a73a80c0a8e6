"""`minivgg train`: build everything (network, data, optimizer, the resumed state) first, then hold the run
folder (RunClaim: a lock, so no second run writes into it), print the banner and train. A start that fails
prints no banner and leaves no run folder behind."""
import os
import shlex
import sys

from .. import backend, models, tiers
from ..config import resume_config
from ..recipe import IMAGENET_MEAN, IMAGENET_STD, augment_loaders, build_model, build_optimizer, describe_augment
from .checks import flags_config
from .folders import claim_run_folder, folder_data
from .stops import exit_status, signal_words


def cmd_train(args):
    from .. import cpu, manual_seed, train

    device = backend.canonical_device(args.device)
    if args.tf32:  # before CuPy's first float32 matrix product, when it reads the setting
        from .. import cuda

        cuda.set_tf32(True)
    tuned = None
    if device != "cpu":
        backend.require_cupy()
    else:
        tuned = [name for name, applied in cpu.tune().items() if applied]
    config, out = run_config(args, device)
    manual_seed(config.seed)
    train_loader, test_loader, val_loader, folder = load_data(config, args, device)
    net, frozen, copied = build_network(config, args, device)
    optimizer, scheduler = build_optimizer(net, config, len(train_loader))
    start, history = 0, None
    if args.resume:
        start, history = train.restore(args.resume, net, optimizer, scheduler, device=device)
    if config.epochs - start <= 0 and not pending_test(history):
        print(f"nothing to do: the run already has {start} of {config.epochs} epochs (raise --epochs)")
        return 0
    claim = claim_run_folder(args, out)
    try:
        print(banner(config, args, device, folder, train_loader, test_loader, claim.path), flush=True)
        print_notes(config, args, net, tuned=tuned, start=start, frozen=frozen, copied=copied)
        if val_loader is not None:
            print(f"plateau rule: watches the accuracy on {len(val_loader.images)} training images held out "
                  f"(--plateau-split {config.plateau_split}); the test set is only scored")
        return run_training(args, config, claim.path, (net, train_loader, test_loader, optimizer, scheduler),
                            start, history, val_loader)
    except KeyboardInterrupt as exc:  # a stop between the banner and the first step: as one during training
        return stopped(exc, claim.path)
    finally:
        claim.release()


def pending_test(history):
    """Whether the run was stopped during the test pass of its last epoch (fit finishes it first)."""
    return bool(history and history["epochs"] and history["epochs"][-1].get("test_acc") is None)


def run_training(args, config, out, parts, start, history, val_loader=None):
    """fit, and what a stop says: a diverged loss (exit 1), or Ctrl-C (exit 130; SIGTERM 143, SIGHUP 129) with
    the command that resumes."""
    from .. import train

    net, train_loader, test_loader, optimizer, scheduler = parts
    monitor = None
    if args.watch_grads:
        from ..inspection import GradientMonitor

        monitor = GradientMonitor(net, every=10)  # the update ratio copies the weights: not every step
    try:
        train.fit(net, train_loader, test_loader, optimizer, config.epochs - start, scheduler=scheduler,
                  out_dir=out, start_epoch=start, history=history, config=config.to_dict(),
                  progress=not args.no_progress, monitor=monitor, scheduler_per_step=config.scheduler == "cosine",
                  clip_grad_norm=config.clip_grad_norm, val_loader=val_loader)
    except train.TrainingDiverged as exc:
        print(f"minivgg train: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (stops.Stopped)
        return stopped(exc, out)
    print(f"run folder {out}: checkpoint.npz, history.json, training.png")
    return 0


def stopped(exc, out):
    """What a stop of `minivgg train` says (the command that resumes, if there is a checkpoint), and its exit
    status (Ctrl-C 130, SIGTERM 143, SIGHUP 129)."""
    from .. import train

    if os.path.exists(os.path.join(out, train.CHECKPOINT)):
        print(f"interrupted{signal_words(exc)}: resume with: minivgg train --resume {shlex.quote(out)}",
              file=sys.stderr)
    else:
        print(f"minivgg train: interrupted{signal_words(exc)} before the first checkpoint was written",
              file=sys.stderr)
    return exit_status(exc)


def run_config(args, device):
    """(the run's RunConfig with every default filled, its folder or None for a new runs/<date-time>). A
    resumed run continues with its saved config (check_resume refused the flags that contradict it); a new one
    with the flags and what --data-dir, --binary, --freeze-features and --torchvision-weights add."""
    from .. import train
    from ..checkpoint import read_config

    flags = flags_config(args)
    if args.resume:
        saved = read_config(os.path.join(args.resume, train.CHECKPOINT))
        if "train_limit" not in saved and not (args.train_limit or args.limit_batches):
            print(f"note: {args.resume} does not record --train-limit or --limit-batches (a run from before "
                  f"they were kept): it resumes on all the data unless you give them again")
        return resume_config(saved, flags).fill_defaults(device).validate(), args.resume
    config = flags
    if args.data_dir:
        config.val_split = args.val_split or 0.2
    config.binary, config.freeze_features = bool(args.binary), bool(args.freeze_features)
    if args.torchvision_weights:  # the input statistics the ImageNet weights were trained with
        config.torchvision_weights = os.path.abspath(args.torchvision_weights)
        config.pixel_mean, config.pixel_std = list(IMAGENET_MEAN), list(IMAGENET_STD)
        if config.subtract_mean is None:
            config.subtract_mean = True
    return config.fill_defaults(device).validate(), args.out


def load_data(config, args, device):
    """(training loader, test loader, the plateau rule's validation loader or None, ImageFolder or None) of
    the run. An image folder gives the network's input channels and outputs: they go into `config`, read
    before the network is built."""
    from .. import data

    if not config.data_dir:
        train_loader, test_loader = data.load_data_fashion_mnist(
            config.batch_size, resize=config.resize, device=device, root=args.data, seed=config.seed,
            train_limit=config.train_limit, limit_batches=config.limit_batches)
        return train_loader, test_loader, hold_out_validation(config, train_loader, test_loader), None
    train_loader, test_loader, folder = folder_data(config, device)
    config.classes, config.in_channels = folder.classes, int(folder.images.shape[1])
    config.num_classes = len(folder.classes)
    if config.binary:
        if len(folder.classes) != 2:
            raise ValueError(f"--binary: {config.data_dir} holds {len(folder.classes)} classes "
                             f"({', '.join(folder.classes)}); a single logit separates two")
        config.num_classes = 1
    return train_loader, test_loader, hold_out_validation(config, train_loader, test_loader), folder


def hold_out_validation(config, train_loader, test_loader):
    """With the plateau rule: move config.plateau_split of the training images (drawn with the seed, the same
    on every resume) into a validation loader, which the rule watches, and return it (None without); then give
    the loaders their augmentation (the validation split the test set's)."""
    from .. import data

    validation = None
    if config.scheduler == "plateau" and config.plateau_split:
        (images, labels), held = data.split((train_loader.images, train_loader.labels), config.plateau_split,
                                            config.seed)
        train_loader.images, train_loader.labels = images, labels
        validation = data.DataLoader(held, config.batch_size, device=train_loader.device, seed=config.seed,
                                     resize=test_loader.resize, normalize=test_loader.normalize,
                                     limit_batches=config.limit_batches)
    augment_loaders(config, train_loader, test_loader)
    if validation is not None:
        validation.augment, validation.resize = test_loader.augment, test_loader.resize
    return validation


def build_network(config, args, device):
    """(network, names of its frozen layers, names of the layers copied by --init-from or None): the run's
    network, started from torchvision's weights or warm-started from another run if asked."""
    from .. import train
    from ..checkpoint import load_checkpoint

    net = build_model(config, device)
    if args.torchvision_weights:
        models.load_torchvision_weights(net, args.torchvision_weights, head=False)
    frozen = models.freeze_features(net) if config.freeze_features else []
    copied = None
    if args.init_from:
        source_state = load_checkpoint(os.path.join(args.init_from, train.CHECKPOINT), device=device,
                                       keys=("model", "config"))
        rng = backend.generator_state()  # building the source draws numbers: keep the run's own stream
        source = build_model(source_state["config"], device).load_state_dict(source_state["model"])
        backend.set_generator_state(rng)
        copied = models.init_from(source, net)
    return net, frozen, copied


def banner(config, args, device, folder, train_loader, test_loader, out):
    """The first line a run prints: what trains on what, how, where."""
    nesterov = "Nesterov " if config.nesterov and config.momentum else ""
    update = (f"Adam lr {config.lr}" if config.optimizer == "adam"
              else f"SGD lr {config.lr} {nesterov}momentum {config.momentum}")
    with_warmup = config.scheduler == "cosine" and config.warmup_epochs
    warmup = f" after {config.warmup_epochs} epochs of warmup" if with_warmup else ""
    output = f" (output layer N(0, {config.output_std}))" if config.output_std else ""
    clipped = f", gradient norm clipped at {config.clip_grad_norm}" if config.clip_grad_norm else ""
    dataset = "Fashion-MNIST" if folder is None else (
        f"{config.data_dir} ({len(folder.classes)} classes, {folder.images.shape[1]} channels; "
        f"{len(train_loader.images)} training and {len(test_loader.images)} held-out images)")
    size = config.crop or config.resize
    return (f"training {config.arch} (channels / {config.ratio}) on {dataset} at {size}x{size}, batch "
            f"{config.batch_size}, {update}, {config.scheduler} schedule{warmup}{clipped}, {config.init} "
            f"init{output}, {config.epochs} epochs on {device}{' with TF32 matrix products' if args.tf32 else ''}; "
            f"run folder {out}")


def print_notes(config, args, net, tuned, start, frozen, copied):
    """The lines under the banner: augmentation, CPU kernels, resume, starting weights, frozen layers."""
    if describe_augment(config):
        print(describe_augment(config))
    if tuned is not None:
        print(f"cpu: {tiers.get_kernels()} kernels; tuned: {', '.join(tuned) or 'nothing'}")
    if args.resume:
        print(f"resuming after epoch {start}")
    if copied is not None:
        print(f"initialized from {args.init_from}: {', '.join(copied) or 'no layer matched in place and shape'}")
    if args.torchvision_weights:
        print(f"weights: {args.torchvision_weights} (torchvision), a new last dense layer for "
              f"{config.num_classes} output{'s' if config.num_classes > 1 else ''}")
    if frozen:
        trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
        print(f"frozen: {', '.join(frozen)} (the convolutional part); {trainable:,} of {net.num_parameters():,} "
              f"parameters train")
    if config.binary:
        print(f"binary: one logit, {config.classes[1]} when positive, binary cross-entropy")
