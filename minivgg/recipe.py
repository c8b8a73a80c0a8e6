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
from . import models, optim

DEVICE_DEFAULTS = {
    "cpu": dict(resize=32, epochs=5, batch_size=256, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True,
                init="kaiming", output_std=0.01, scheduler="cosine", warmup_epochs=0.6, clip_grad_norm=5.0),
    "cuda": dict(resize=224, epochs=10, batch_size=128, optimizer="sgd", lr=0.05, momentum=0.0, nesterov=False,
                 init="xavier", output_std=0.0, scheduler="none", warmup_epochs=0.0, clip_grad_norm=0.0),
}
# What a run's config holds: saved in its checkpoint, so a resumed run rebuilds the same network and optimizer.
MODEL_KEYS = ("arch", "ratio", "resize", "init", "output_std", "seed", "batch_size", "optimizer", "lr", "momentum",
              "nesterov", "weight_decay", "scheduler", "warmup_epochs", "epochs", "clip_grad_norm")


def build_model(config, device):
    """The network a run `config` (a dict of MODEL_KEYS) describes, initialized on `device`."""
    net = models.build(config["arch"], config["ratio"], num_classes=10, in_channels=1).to(device)
    return models.initialize(net, (1, 1, config["resize"], config["resize"]), config.get("init", "xavier"),
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
