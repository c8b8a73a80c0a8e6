"""Lesson 17: the paper's training recipe (section 3.1): SGD with momentum, weight decay 5e-4, dropout 0.5, the
rate divided by 10 when the validation accuracy stops improving, random crops of rescaled images (scale
jittering), flips and an intensity shift; and the training mean subtracted (section 2.1). The package's
`--recipe paper` (minivgg.recipe, minivgg.augment): what it does to the images, then short runs on a small
Fashion-MNIST subset of the recipe with its augmentation and without it (everything else the same), the rate's
schedule watching a validation split held out from the training images and the test set scored once, at the end."""
# %%
import os
import time

# One BLAS thread (OpenBLAS reads this when NumPy loads): several spin while they wait for each other, which on a
# busy machine costs far more than they save.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import minivgg as mv  # noqa: E402
from minivgg import data, models, nn, optim, recipe, train  # noqa: E402
from lesson import QUICK, claim, exercises, notice, pyplot, save_figure, section  # noqa: E402

mv.cpu.tune()  # freed buffers are kept for reuse: steadier step times
# Quick mode narrows the two 4096-wide dense layers to 256: a step then costs a fraction, the blocks are D2L's.
ratio, width, n_train, epochs, batch = (8, 256, 500, 8, 25) if QUICK else (4, 4096, 1500, 10, 50)
n_val, n_test, n_seen = (250, 500, 500) if QUICK else (500, 2000, 1000)  # validation, test, training scored
seeds = (0, 1, 2) if QUICK else (0, 1, 2, 3, 4)
train_x, train_y = data.load_fashion_mnist("train")
test_x, test_y = data.load_fashion_mnist("test")
# The validation split is held out from the training images: the schedule watches it, the test set waits.
val_x, val_y = train_x[n_train:n_train + n_val], train_y[n_train:n_train + n_val]
train_x, train_y = train_x[:n_train], train_y[:n_train]
# The paper's optimizer and rate (SGD, momentum 0.9, lr 0.01). Its initialization (N(0, 10^-2) and the warm start of
# lesson 18) does not fit in runs this short: both runs start from He's init instead (explicit settings win over
# the preset), and take batches of 25 where the paper took 256.
OPTIMIZER = dict(init="kaiming", output_std=0.01, batch_size=batch, arch="d2l", ratio=ratio, epochs=epochs)
AUGMENTATION = dict(crop=None, scale_jitter=None, flip=False, intensity_shift=0.0)  # what "without" switches off


def make_config(augmented, seed=0):
    """A run's config as `minivgg train --recipe paper` fills it, with or without the recipe's augmentation:
    without, the images are resized to 32 and only the training mean is subtracted."""
    config = recipe.fill_defaults(dict(OPTIMIZER, seed=seed, recipe="paper"), "cpu")
    if not augmented:
        config.update(AUGMENTATION, resize=config["crop"])
    return config


def make_loaders(config):
    """(training, validation, test, the first n_seen training images as the test set sees images) loaders,
    with the augmentation `config` asks for."""
    resize, seed = config["resize"], config["seed"]
    loaders = (data.DataLoader((train_x, train_y), batch, shuffle=True, resize=resize, seed=seed),
               data.DataLoader((val_x, val_y), 500, resize=resize),
               data.DataLoader((test_x[:n_test], test_y[:n_test]), 500, resize=resize),
               data.DataLoader((train_x[:n_seen], train_y[:n_seen]), 500, resize=resize))
    recipe.augment_loaders(config, *loaders[:2])
    for loader in loaders[2:]:  # the training pixels' statistics are in config now
        recipe.augment_loaders(config, test_loader=loader)
    return loaders


def make_net(config):
    """D2L's VGG-11 (channels / ratio) as `config` initializes it."""
    mv.manual_seed(config["seed"])
    net = models.build(config["arch"], ratio)
    if width != 4096:  # the dense layers at positions 6 and 9 of D2L's VGG: Flatten is 5, ReLU 7, Dropout 8
        layers = list(net)  # a new Sequential: replacing a middle module in place moves it to the end
        layers[6], layers[9] = nn.LazyLinear(width), nn.LazyLinear(width)
        net = nn.Sequential(*layers)
    size = recipe.input_size(config)
    models.initialize(net, (1, 1, size, size), config["init"], output_std=config["output_std"])
    return net


configs = {"augmented": make_config(True), "not augmented": make_config(False)}
nets = {name: make_net(config) for name, config in configs.items()}
dropout = {name: sorted({m.p for m in net.modules() if isinstance(m, nn.Dropout)}) for name, net in nets.items()}
section("The recipe with its augmentation and without, as `minivgg train` fills them")
for key in ("optimizer", "lr", "momentum", "weight_decay", "scheduler", "crop", "scale_jitter", "resize", "flip",
            "intensity_shift", "subtract_mean"):
    print(f"  {key:<16} {str(configs['augmented'][key]):<10} {configs['not augmented'][key]}")
print(f"  {'dropout':<16} {str(dropout['augmented']):<10} {dropout['not augmented']}")
built = {name: recipe.build_optimizer(nets[name], config, 1) for name, config in configs.items()}
opt, plateau = built["augmented"]
augment = make_loaders(configs["augmented"])[0].augment
plain_augment = make_loaders(configs["not augmented"])[0].augment
print(f"  built from the recipe: {type(opt).__name__} with momentum {opt.param_groups[0]['momentum']} and "
      f"weight_decay {opt.param_groups[0]['weight_decay']}, {type(plateau).__name__}(factor {plateau.factor}, "
      f"patience {plateau.patience}); training loaders {augment} and {plain_augment}")
claim(isinstance(opt, optim.SGD) and opt.param_groups[0]["momentum"] == 0.9
      and opt.param_groups[0]["weight_decay"] == 5e-4 and isinstance(plateau, optim.ReduceLROnPlateau)
      and plateau.factor == 0.1 and augment.crop == 32 and augment.jitter == (36, 44)
      and type(built["not augmented"][1]) is type(plateau) and plain_augment.crop is None
      and plain_augment.shift == 0 and plain_augment.mean is not None
      and dropout == {"augmented": [0.5], "not augmented": [0.5]},
      "what the package builds from the preset: SGD with momentum 0.9 and weight decay 5e-4, a schedule that "
      "divides the rate by 10, dropout 0.5, a training loader cropping 32x32 from images rescaled to a scale "
      "drawn from [36, 44]; without augmentation the same optimizer, schedule and dropout, and a loader that only "
      "subtracts the mean")
print("  The paper draws the training scale S for each image from [256, 512] (2x from smallest to largest) and")
print("  crops 224; minivgg draws one S for each whole batch from [36, 44] (1.22x) and crops 32, so a garment of")
print("  28 pixels stays mostly inside the crop.")

# %%
section("What the augmentation does to the images")
loaders = {name: make_loaders(config) for name, config in configs.items()}
plain_batch = next(iter(loaders["not augmented"][0]))[0].numpy()
recipe_batch = next(iter(loaders["augmented"][0]))[0].numpy()
raw_mean = configs["augmented"]["pixel_mean"][0]
print(f"  first batch: not augmented {plain_batch.shape}, mean {plain_batch.mean():.3f}; augmented "
      f"{recipe_batch.shape}, mean {recipe_batch.mean():.3f} (training pixels' mean {raw_mean:.3f})")
claim(recipe_batch.shape == plain_batch.shape and np.abs(recipe_batch - plain_batch).max() > 0.5,
      "the augmented batch has the other's shape, with different values: each image rescaled, cropped, "
      "maybe flipped, shifted")
claim(max(abs(recipe_batch.mean()), abs(plain_batch.mean())) < 0.5 * raw_mean, "both are centred: the training "
      "mean is subtracted with and without augmentation (the paper's only preprocessing, section 2.1)")


def first_batch(loader, epoch):
    loader.set_epoch(epoch)
    return next(iter(loader))[0].numpy()


augmented = loaders["augmented"][0]
again = make_loaders(configs["augmented"])[0]
claim(np.array_equal(first_batch(augmented, 0), first_batch(again, 0)), "seeded: a second loader with the same "
      "seed gives the same first batch, bit for bit (crop positions, scales, flips, shifts)")
probe = data.DataLoader((train_x[:4], train_y[:4]), 4, resize=configs["augmented"]["resize"], seed=0)
recipe.augment_loaders(configs["augmented"], probe)
views = np.stack([first_batch(probe, e) for e in range(6)])  # (epoch, image, 1, 32, 32): the same four images
claim(all(not np.array_equal(views[e, i], views[0, i]) for e in range(1, 6) for i in range(4)), "and each epoch "
      "shows every image anew: the same four images differ from their epoch-0 views in every later epoch")
test_loader = loaders["augmented"][2]
test_batch = next(iter(test_loader))[0].numpy()
by_hand = next(iter(data.DataLoader((test_x[:n_test], test_y[:n_test]), 500, resize=40)))[0].numpy()
by_hand = by_hand[..., 4:36, 4:36] - np.reshape(configs["augmented"]["pixel_mean"], (1, -1, 1, 1))
claim(np.allclose(test_batch, by_hand, atol=1e-5) and np.array_equal(test_batch, next(iter(test_loader))[0].numpy()),
      "the test images are rescaled to Q = 40 and centre-cropped to 32x32, the mean subtracted (equal to doing "
      "it by hand, within 1e-5): nothing random, the same every time")
test_view = next(iter(loaders["augmented"][3]))[0].numpy()[:4]  # the four training images, as the test set is seen

plt = pyplot()
fig, axes = plt.subplots(4, 8, figsize=(11, 6))
low, high = views.min(), views.max()
for row in range(4):
    panels = [(train_x[row] / 255.0, "the image (28x28)", None), (test_view[row, 0], "test view", (low, high))]
    panels += [(views[e, row, 0], f"epoch {e}", (low, high)) for e in range(6)]
    for ax, (image, title, limits) in zip(axes[row], panels):
        ax.imshow(image, cmap="gray", vmin=(limits or (0, 1))[0], vmax=(limits or (0, 1))[1])
        ax.set_xticks([])
        ax.set_yticks([])
        if row == 0:
            ax.set_title(title, fontsize=9)
fig.suptitle("The same four images as the recipe's training loader hands them on, epoch after epoch\n32x32 crops "
             "of the image rescaled to a scale in 36..44 drawn per batch, flips, intensity shift,\nmean "
             "subtracted; the views share one grey scale", fontsize=11)
save_figure(fig, "17_augmentation.png", dpi=80)

# %%
section(f"Short runs with and without the augmentation: {n_train} training images, {epochs} epochs, batch {batch}, "
        f"SGD lr 0.01, seeds {', '.join(map(str, seeds))}")
runs = {name: [] for name in configs}  # one record per seed
for seed in seeds:
    for name in configs:
        config = make_config(name == "augmented", seed)
        net = make_net(config)
        train_loader, val_loader, test_loader, seen_loader = make_loaders(config)
        opt, scheduler = recipe.build_optimizer(net, config, len(train_loader))
        history, seen_acc, start = None, [], time.perf_counter()
        for epoch in range(epochs):  # one epoch at a time, to score the training images after each
            # fit's "test" loader is the validation split here: the plateau rule steps on its accuracy
            history = train.fit(net, train_loader, val_loader, opt, 1, scheduler=scheduler, start_epoch=epoch,
                                history=history, progress=False, print_fn=lambda *a: None)
            seen_acc.append(train.evaluate_accuracy(net, seen_loader))
        r = dict(seen=np.array(seen_acc), val=np.array([e["test_acc"] for e in history["epochs"]]),
                 lr=[e["lr"] for e in history["epochs"]], test=train.evaluate_accuracy(net, test_loader),
                 val_again=train.evaluate_accuracy(net, val_loader))
        runs[name].append(r)
        print(f"  seed {seed}, {name:<13}: training images {r['seen'][-1]:.3f}, validation {r['val'][-1]:.3f}, "
              f"test (once, at the end) {r['test']:.3f}, gap training - test {r['seen'][-1] - r['test']:+.3f}; "
              f"{time.perf_counter() - start:.0f} s on this machine")

gaps = {name: np.array([r["seen"][-1] - r["test"] for r in rs]) for name, rs in runs.items()}
tests = {name: np.array([r["test"] for r in rs]) for name, rs in runs.items()}
S = len(seeds)
se = np.sqrt(0.25 / n_test)  # the standard error of an accuracy on n_test images, at most
se_gap = np.hypot(se, np.sqrt(0.25 / n_seen))  # of a gap: two accuracies
# Each seed pairs two runs that share the initial weights and the order of the batches: the difference of their
# gaps. Its standard error: the larger of the seeds' own spread and what the test sets' sampling allows.
shrink = gaps["not augmented"] - gaps["augmented"]
se_shrink = max(shrink.std(ddof=1), np.sqrt(2) * se_gap) / np.sqrt(S)
print(f"  mean over {S} seeds: test accuracy without {tests['not augmented'].mean():.3f}, with "
      f"{tests['augmented'].mean():.3f}; gap without {gaps['not augmented'].mean():+.3f}, with "
      f"{gaps['augmented'].mean():+.3f}; the augmentation shrank the gap by {shrink.mean():+.3f} +- {se_shrink:.3f} "
      f"(standard error over the {S} pairs)")
claim(abs(shrink.mean()) < 2 * se_shrink, f"the augmentation did not change the gap between training and test "
      f"accuracy beyond the noise ({shrink.mean():+.3f} +- {se_shrink:.3f}; per seed "
      + ", ".join(f"{p:+.3f} without, {q:+.3f} with" for p, q in zip(gaps["not augmented"], gaps["augmented"]))
      + f"): with dropout and weight decay in both, neither run overfits {n_train} images in {epochs} epochs, so "
      "there is no gap for it to close")
slower = tests["not augmented"] - tests["augmented"]
claim(all(slower > 2 * np.sqrt(2) * se), "what it did do: in each seed the augmented run's test accuracy is "
      "lower, by more than two standard errors of a difference ("
      + ", ".join(f"{q:.3f} against {p:.3f}" for p, q in zip(tests["not augmented"], tests["augmented"]))
      + f"): a new view of each image every epoch is a harder task, learnt slower in {epochs} epochs")
print("  at equal accuracy? For each seed, the epoch of the run without augmentation whose validation accuracy was")
print("  closest to the augmented run's final one, and the two gaps (training - validation) there:")
se_val = np.sqrt(0.25 / n_val)
for seed, plain, paper in zip(seeds, runs["not augmented"], runs["augmented"]):
    e = int(np.argmin(np.abs(plain["val"] - paper["val"][-1])))
    then, final = plain["seen"][e] - plain["val"][e], paper["seen"][-1] - paper["val"][-1]
    noise = 2 * np.sqrt(2) * np.hypot(se_val, np.sqrt(0.25 / n_seen))  # two standard errors of a gap difference
    if abs(plain["val"][e] - paper["val"][-1]) > 2 * np.sqrt(2) * se_val:
        verdict = "the accuracies differ by more than the noise: no equal-accuracy comparison in this run"
    elif then - final > noise:
        verdict = "the gap without augmentation was larger even at equal accuracy"
    elif final - then > noise:
        verdict = "the augmented run's gap was larger"
    else:
        verdict = "the gaps agree within the noise"
    print(f"  seed {seed}: without, after epoch {e + 1}, validation {plain['val'][e]:.3f} against the augmented "
          f"run's {paper['val'][-1]:.3f}; gaps {then:+.3f} and {final:+.3f} (noise about +-{noise:.3f}): {verdict}")
for name, rs in runs.items():
    for seed, r in zip(seeds, rs):
        falls = r["val"][:-1] - r["val"][1:]
        e = int(np.argmax(falls))
        if falls[e] > 2 * np.sqrt(2) * se_val:
            print(f"  seed {seed}, {name}: the validation accuracy fell from {r['val'][e]:.3f} to "
                  f"{r['val'][e + 1]:.3f} in epoch {e + 2}, more than the noise: one epoch of SGD at lr "
                  f"{r['lr'][e + 1]:g} with momentum on {n_train} images can throw the net off a good point. The "
                  "plateau rule counts such an epoch as no improvement; the test set sees the last epoch's net")

section("The plateau rule: the rate divided by 10 when the validation accuracy stops improving")
_, rule = recipe.build_optimizer(make_net(configs["augmented"]), configs["augmented"], 1)
made_up = [0.30, 0.50, 0.60, 0.58, 0.60, 0.65, 0.66, 0.64, 0.64, 0.70]  # stalls after epochs 3 and 7
rates = []
for accuracy in made_up:
    rates.append(rule.optimizer.lr)  # the rate an epoch runs with, then its accuracy is reported
    rule.step(accuracy)
print(f"  made-up validation accuracies: {' '.join(f'{a:.2f}' for a in made_up)}")
print(f"  the recipe's rule gives rates:  {' '.join(f'{lr:g}' for lr in rates)}")
claim(np.allclose(rates, [1e-2] * 5 + [1e-3] * 4 + [1e-4]), "fed accuracies that fail to beat their best for "
      "two epochs in a row (epochs 4-5, then 8-9), the recipe's schedule divides the rate by 10 after each "
      "such pair, and not before")
replayed = []
for name, r in ((name, r) for name, rs in runs.items() for r in rs):  # each run's accuracies, to a fresh schedule
    _, plateau = recipe.build_optimizer(make_net(configs[name]), configs[name], 1)
    replayed.append([])
    for accuracy in r["val"]:
        replayed[-1].append(plateau.optimizer.lr)
        plateau.step(accuracy)
for seed, r in zip(seeds, runs["augmented"]):
    print(f"  seed {seed}, augmented: validation accuracy per epoch {' '.join(f'{a:.2f}' for a in r['val'])}; rates "
          f"{' '.join(f'{lr:g}' for lr in r['lr'])}")
claim(all(rep == r["lr"] and r["val"][-1] == r["val_again"]
          for rep, r in zip(replayed, runs["augmented"] + runs["not augmented"])), "replayed on each run's validation "
      "accuracies, the schedule gives the rates that run trained with, and the last accuracy it was fed is the "
      "validation split's, scored again at the end: the runs followed this rule, on "
      "the validation split")
fired = sum(rates[-1] < rates[0] for rates in replayed)
print(f"  the rule fired in {fired} of the {len(replayed)} runs")

plt = pyplot()
fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), sharey=True)
x = np.arange(1, epochs + 1)
for ax, (name, rs) in zip(axes, runs.items()):
    for k, r in enumerate(rs):
        ax.plot(x, r["seen"], "o-", color="tab:blue", alpha=1 if k == 0 else 0.4, markersize=4,
                label=f"training images (first {n_seen}, as the test set sees them)" if k == 0 else None)
        ax.plot(x, r["val"], "s--", color="tab:orange", alpha=1 if k == 0 else 0.4, markersize=4,
                label=f"validation ({n_val} held-out training images)" if k == 0 else None)
        ax.plot([epochs + 0.3], [r["test"]], "*", color="black", markersize=9, alpha=1 if k == 0 else 0.4,
                label=f"test ({n_test} images), once at the end" if k == 0 else None)
        cuts = [e for e in range(1, epochs) if r["lr"][e] < r["lr"][e - 1]]
        for e in cuts:
            ax.axvline(e + 0.5, color="red", linestyle=":", alpha=1 if k == 0 else 0.4)
    ax.set_title(f"{name}: mean test accuracy {tests[name].mean():.3f}, gap training - test {gaps[name].mean():+.3f}",
                 fontsize=10)
    ax.set_xlabel(f"epoch (seed {seeds[0]} solid, seed{'s' if len(seeds) > 2 else ''} "
                  f"{', '.join(map(str, seeds[1:]))} faint; red dotted: rate / 10)", fontsize=9)
    ax.set_xticks(x)
    ax.grid(True, alpha=0.3)
axes[0].set_ylabel("accuracy (evaluation mode)")
handles, labels = axes[0].get_legend_handles_labels()
fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
save_figure(fig, "17_recipe.png", rect=(0, 0.08, 1, 1))

notice("Everything but the augmentation was the same in both runs of a seed (initial weights, batches, dropout, "
       "weight decay, schedule), so the difference between them is the augmentation's doing: here it slowed "
       "learning and left the train-test gap alone, because runs this short did not overfit.",
       "The paper measured what scale jittering buys over whole ImageNet trainings (its Table 3); a short run on "
       "few images cannot show that gain, and a smaller final gap alone would not show it either: compare at "
       "equal validation accuracy, and against the noise.",
       "The augmentation is random but seeded: the same seed and epoch give the same batches, bit for bit.")

exercises("Train both runs for three times as many epochs. Does the augmented run's test accuracy overtake the other?",
          "Switch one part off at a time (`minivgg train --recipe paper --no-flip`, `--intensity-shift 0`, ...). "
          "Which part shrinks the gap most?",
          "Start the runs from the preset's `init='xavier'` instead of He's. That is Glorot & Bengio's rule: the "
          "paper's own procedure was N(0, 10^-2) (std 0.1) "
          "with the warm start of lesson 18, and it names Glorot's only as found, after submission, to work "
          "without that pre-training. How many epochs until the run leaves chance?")
