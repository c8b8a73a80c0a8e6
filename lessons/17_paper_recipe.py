"""Lesson 17: the paper's training recipe (section 3.1): weight decay 5e-4, dropout 0.5, the rate divided by 10
when the validation accuracy stops improving, random crops of rescaled images (scale jittering), flips, an
intensity shift and the mean subtracted. The package's `--recipe paper` (minivgg.recipe, minivgg.augment):
what it does to the images, and short runs on a small Fashion-MNIST subset with it and without it, the rate's
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
seeds = (0, 1) if QUICK else (0, 1, 2)
train_x, train_y = data.load_fashion_mnist("train")
test_x, test_y = data.load_fashion_mnist("test")
# The validation split is held out from the training images: the schedule watches it, the test set waits.
val_x, val_y = train_x[n_train:n_train + n_val], train_y[n_train:n_train + n_val]
train_x, train_y = train_x[:n_train], train_y[:n_train]
# The paper's procedure (SGD at lr 0.01 from N(0, 10^-2), then the warm start of lesson 18) does not fit in runs
# this short: both runs take Adam at lr 1e-3 and He's init instead (explicit settings win over the preset).
OPTIMIZER = dict(optimizer="adam", lr=1e-3, init="kaiming", output_std=0.01, warmup_epochs=0.0,
                 clip_grad_norm=0.0, batch_size=batch, arch="d2l", ratio=ratio, epochs=epochs)


def make_config(with_recipe, seed=0):
    """A run's config as `minivgg train` fills it: the paper's preset, or none (no decay, no schedule)."""
    config = dict(OPTIMIZER, seed=seed, recipe="paper") if with_recipe else \
        dict(OPTIMIZER, seed=seed, weight_decay=0.0, scheduler="none")
    return recipe.fill_defaults(config, "cpu")


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


def make_net(name, config):
    """D2L's VGG-11 (channels / ratio) as `config` initializes it; the plain run's dropout switched off."""
    mv.manual_seed(config["seed"])
    net = models.build(config["arch"], ratio)
    if width != 4096:  # the dense layers at positions 6 and 9 of D2L's VGG: Flatten is 5, ReLU 7, Dropout 8
        net[6], net[9] = nn.LazyLinear(width), nn.LazyLinear(width)
    size = recipe.input_size(config)
    models.initialize(net, (1, 1, size, size), config["init"], output_std=config["output_std"])
    for m in net.modules():
        if isinstance(m, nn.Dropout) and name == "plain":
            m.p = 0.0
    return net


configs = {"plain": make_config(False), "paper recipe": make_config(True)}
nets = {name: make_net(name, config) for name, config in configs.items()}
dropout = {name: sorted({m.p for m in net.modules() if isinstance(m, nn.Dropout)}) for name, net in nets.items()}
section("The two configurations, as `minivgg train` fills them")
for key in ("weight_decay", "scheduler", "crop", "scale_jitter", "resize", "flip", "intensity_shift", "subtract_mean"):
    print(f"  {key:<16} {str(configs['plain'][key]):<8} {configs['paper recipe'][key]}")
print(f"  {'dropout':<16} {str(dropout['plain']):<8} {dropout['paper recipe']}")
built = {name: recipe.build_optimizer(nets[name], config, 1) for name, config in configs.items()}
opt, plateau = built["paper recipe"]
augment = make_loaders(configs["paper recipe"])[0].augment
print(f"  built from the recipe: {type(opt).__name__} with weight_decay {opt.param_groups[0]['weight_decay']}, "
      f"{type(plateau).__name__}(factor {plateau.factor}, patience {plateau.patience}), {augment}")
claim(opt.param_groups[0]["weight_decay"] == 5e-4 and isinstance(plateau, optim.ReduceLROnPlateau)
      and plateau.factor == 0.1 and augment.crop == 32 and augment.jitter == (36, 44)
      and built["plain"][1] is None and built["plain"][0].param_groups[0]["weight_decay"] == 0
      and make_loaders(configs["plain"])[0].augment is None
      and dropout == {"plain": [0.0], "paper recipe": [0.5]},
      "what the package builds from the preset: an optimizer with weight decay 5e-4, a schedule that divides "
      "the rate by 10, a training loader cropping 32x32 from images rescaled to a scale drawn from [36, 44], "
      "a network with dropout 0.5; the plain run builds none of these")
print("  The paper draws the training scale S for each image from [256, 512] (2x from smallest to largest) and")
print("  crops 224; minivgg draws one S for each whole batch from [36, 44] (1.22x) and crops 32, so a garment of")
print("  28 pixels stays mostly inside the crop.")

# %%
section("What the augmentation does to the images")
loaders = {name: make_loaders(config) for name, config in configs.items()}
plain_batch = next(iter(loaders["plain"][0]))[0].numpy()
recipe_batch = next(iter(loaders["paper recipe"][0]))[0].numpy()
print(f"  first batch: plain {plain_batch.shape}, mean {plain_batch.mean():.3f}; recipe {recipe_batch.shape}, mean "
      f"{recipe_batch.mean():.3f} (training pixels' mean {configs['paper recipe']['pixel_mean'][0]:.3f})")
claim(recipe_batch.shape == plain_batch.shape and np.abs(recipe_batch - plain_batch).max() > 0.5,
      "the recipe's batch has the plain batch's shape, with different values: each image rescaled, cropped, "
      "maybe flipped, shifted")
claim(abs(recipe_batch.mean()) < 0.5 * plain_batch.mean(), "and centred: the training mean is subtracted")


def first_batch(loader, epoch):
    loader.set_epoch(epoch)
    return next(iter(loader))[0].numpy()


augmented = loaders["paper recipe"][0]
again = make_loaders(configs["paper recipe"])[0]
claim(np.array_equal(first_batch(augmented, 0), first_batch(again, 0)), "seeded: a second loader with the same "
      "seed gives the same first batch, bit for bit (crop positions, scales, flips, shifts)")
probe = data.DataLoader((train_x[:4], train_y[:4]), 4, resize=configs["paper recipe"]["resize"], seed=0)
recipe.augment_loaders(configs["paper recipe"], probe)
views = np.stack([first_batch(probe, e) for e in range(6)])  # (epoch, image, 1, 32, 32): the same four images
claim(all(not np.array_equal(views[e, i], views[0, i]) for e in range(1, 6) for i in range(4)), "and each epoch "
      "shows every image anew: the same four images differ from their epoch-0 views in every later epoch")
test_loader = loaders["paper recipe"][2]
test_batch = next(iter(test_loader))[0].numpy()
by_hand = next(iter(data.DataLoader((test_x[:n_test], test_y[:n_test]), 500, resize=40)))[0].numpy()
by_hand = by_hand[..., 4:36, 4:36] - np.reshape(configs["paper recipe"]["pixel_mean"], (1, -1, 1, 1))
claim(np.allclose(test_batch, by_hand, atol=1e-5) and np.array_equal(test_batch, next(iter(test_loader))[0].numpy()),
      "the test images are rescaled to Q = 40 and centre-cropped to 32x32, the mean subtracted (equal to doing "
      "it by hand, within 1e-5): nothing random, the same every time")
test_view = next(iter(loaders["paper recipe"][3]))[0].numpy()[:4]  # the four training images, as the test set is seen

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
fig.suptitle("The same four images as the recipe's training loader hands them on, epoch after epoch\n(32x32 crops "
             "of the image rescaled to a scale in 36..44 drawn per batch, flips, intensity shift, mean "
             "subtracted; the views share one grey scale)")
save_figure(fig, "17_augmentation.png", dpi=80)

# %%
section(f"Short runs with and without: {n_train} training images, {epochs} epochs, batch {batch}, Adam lr 1e-3, "
        f"seeds {', '.join(map(str, seeds))}")
runs = {name: [] for name in configs}  # one record per seed
for seed in seeds:
    for name in configs:
        config = make_config(name == "paper recipe", seed)
        net = make_net(name, config)
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
        print(f"  seed {seed}, {name:<12}: training images {r['seen'][-1]:.3f}, validation {r['val'][-1]:.3f}, "
              f"test (once, at the end) {r['test']:.3f}, gap training - test {r['seen'][-1] - r['test']:+.3f}; "
              f"{time.perf_counter() - start:.0f} s on this machine")

gaps = {name: np.array([r["seen"][-1] - r["test"] for r in rs]) for name, rs in runs.items()}
tests = {name: np.array([r["test"] for r in rs]) for name, rs in runs.items()}
se = np.sqrt(0.25 / n_test)  # the standard error of an accuracy on n_test images, at most
se_gap = np.hypot(se, np.sqrt(0.25 / n_seen))  # of a gap: two accuracies
print(f"  mean over {len(seeds)} seeds: test accuracy plain {tests['plain'].mean():.3f}, recipe "
      f"{tests['paper recipe'].mean():.3f}; gap plain {gaps['plain'].mean():+.3f}, recipe "
      f"{gaps['paper recipe'].mean():+.3f} (standard errors: an accuracy on {n_test} images +-{se:.3f}, a gap "
      f"+-{se_gap:.3f})")
claim(all(gaps["paper recipe"] < gaps["plain"]), f"in each of the {len(seeds)} seeds the recipe's gap between "
      "training and test accuracy is the smaller ("
      + ", ".join(f"{p:+.3f} without, {q:+.3f} with" for p, q in zip(gaps["plain"], gaps["paper recipe"]))
      + f"); with +-{se_gap:.3f} on each gap and {len(seeds)} seeds, a small sample")
claim(all(tests["paper recipe"] < tests["plain"] - 2 * se), f"and in each seed its test accuracy is lower, by "
      f"more than two standard errors: after {epochs} epochs the recipe has not caught up ("
      + ", ".join(f"{q:.3f} against {p:.3f}" for p, q in zip(tests["plain"], tests["paper recipe"])) + ")")
print("  at equal accuracy? For each seed, the plain run's epoch whose validation accuracy was closest to the")
print("  recipe's final one, and the two gaps (training - validation) there:")
se_val = np.sqrt(0.25 / n_val)
for seed, plain, paper in zip(seeds, runs["plain"], runs["paper recipe"]):
    e = int(np.argmin(np.abs(plain["val"] - paper["val"][-1])))
    then, final = plain["seen"][e] - plain["val"][e], paper["seen"][-1] - paper["val"][-1]
    noise = 2 * np.sqrt(2) * np.hypot(se_val, np.sqrt(0.25 / n_seen))  # two standard errors of a gap difference
    if abs(plain["val"][e] - paper["val"][-1]) > 2 * np.sqrt(2) * se_val:
        verdict = "the accuracies differ by more than the noise: no equal-accuracy comparison in this run"
    elif then - final > noise:
        verdict = "the plain run's gap was larger even at equal accuracy"
    elif final - then > noise:
        verdict = "the recipe's gap was larger: its smaller final gap came from learning slower"
    else:
        verdict = "the gaps agree within the noise: the recipe's smaller final gap may be only its slower learning"
    print(f"  seed {seed}: plain after epoch {e + 1}, validation {plain['val'][e]:.3f} against the recipe's "
          f"{paper['val'][-1]:.3f}; gaps {then:+.3f} and {final:+.3f} (noise about +-{noise:.3f}): {verdict}")

section("The plateau rule: the rate divided by 10 when the validation accuracy stops improving")
_, rule = recipe.build_optimizer(make_net("paper recipe", configs["paper recipe"]), configs["paper recipe"], 1)
made_up = [0.30, 0.50, 0.60, 0.58, 0.60, 0.65, 0.66, 0.64, 0.64, 0.70]  # stalls after epochs 3 and 7
rates = []
for accuracy in made_up:
    rates.append(rule.optimizer.lr)  # the rate an epoch runs with, then its accuracy is reported
    rule.step(accuracy)
print(f"  made-up validation accuracies: {' '.join(f'{a:.2f}' for a in made_up)}")
print(f"  the recipe's rule gives rates:  {' '.join(f'{lr:g}' for lr in rates)}")
claim(np.allclose(rates, [1e-3] * 5 + [1e-4] * 4 + [1e-5]), "fed accuracies that fail to beat their best for "
      "two epochs in a row (epochs 4-5, then 8-9), the recipe's schedule divides the rate by 10 after each "
      "such pair, and not before")
replayed = []
for r in runs["paper recipe"]:  # each recipe run's validation accuracies, fed to a fresh copy of the schedule
    _, plateau = recipe.build_optimizer(make_net("paper recipe", configs["paper recipe"]), configs["paper recipe"], 1)
    replayed.append([])
    for accuracy in r["val"]:
        replayed[-1].append(plateau.optimizer.lr)
        plateau.step(accuracy)
for seed, r in zip(seeds, runs["paper recipe"]):
    print(f"  seed {seed}, recipe: validation accuracy per epoch {' '.join(f'{a:.2f}' for a in r['val'])}; rates "
          f"{' '.join(f'{lr:g}' for lr in r['lr'])}")
claim(all(rep == r["lr"] and r["val"][-1] == r["val_again"]
          for rep, r in zip(replayed, runs["paper recipe"])), "replayed on each recipe run's validation "
      "accuracies, the schedule gives the rates that run trained with, and the last accuracy it was fed is the "
      "validation split's, scored again at the end: the runs followed this rule, on "
      "the validation split")
fired = sum(rates[-1] < rates[0] for rates in replayed)
print(f"  the rule fired in {fired} of the {len(seeds)} recipe runs")

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
    ax.set_title(f"{name}: mean gap training - test {gaps[name].mean():+.3f}", fontsize=10)
    ax.set_xlabel(f"epoch (seed {seeds[0]} solid, seed{'s' if len(seeds) > 2 else ''} "
                  f"{', '.join(map(str, seeds[1:]))} faint; red dotted: rate / 10)", fontsize=9)
    ax.set_xticks(x)
    ax.grid(True, alpha=0.3)
axes[0].set_ylabel("accuracy (evaluation mode)")
handles, labels = axes[0].get_legend_handles_labels()
fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
save_figure(fig, "17_recipe.png", rect=(0, 0.08, 1, 1))

notice("The recipe's augmentation shows the network a different crop, scale and flip of each image every epoch, "
       "so memorising the training images pays less: in these runs the training accuracy stayed closer to the "
       "test accuracy.",
       "In a short run on few images the recipe also learns slower (dropout, a new view of each image every "
       "epoch): compare the gaps at equal validation accuracy, not only at the end, and against the noise.",
       "The augmentation is random but seeded: the same seed and epoch give the same batches, bit for bit.")

exercises("Train both runs for three times as many epochs. Does the recipe's test accuracy overtake the plain one?",
          "Switch one part off at a time (`minivgg train --recipe paper --no-flip`, `--intensity-shift 0`, ...). "
          "Which part shrinks the gap most?",
          "Try the paper's optimizer, SGD at lr 0.01 (`optimizer='sgd', lr=0.01`), with the preset's "
          "`init='xavier'`. That is Glorot & Bengio's rule: the paper's own procedure was N(0, 10^-2) (std 0.1) "
          "with the warm start of lesson 18, and it names Glorot's only as found, after submission, to work "
          "without that pre-training. How many epochs until the run leaves chance?")
