"""The paper's training-time augmentation (minivgg/augment.py): each transform on small inputs, the draws
seeded from (seed, epoch, batch), the batches made on the device without a host synchronization, and the
`--recipe paper` preset of the command line."""
import os

import numpy as np
import pytest

import minivgg as mv
from minivgg import augment, backend, cli, data, recipe

needs_data = pytest.mark.skipif(not os.path.isdir(data.DEBIAN_DIR),
                                reason="install dataset-fashion-mnist (Debian) for real data")


def _dataset(n=40, size=12, channels=None, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n, size, size) if channels is None else (n, channels, size, size)
    return rng.integers(0, 256, shape, dtype=np.uint8), rng.integers(0, 10, n)


def _batches(loader):
    return [(backend.to_numpy(x.data), backend.to_numpy(y.data)) for x, y in loader]


def test_crop_cuts_each_image_at_its_own_position():
    images = np.arange(2 * 2 * 6 * 7, dtype=np.float32).reshape(2, 2, 6, 7)
    out = augment.crop(images, 3, np.array([0, 3]), np.array([4, 1]))
    assert out.shape == (2, 2, 3, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], images[0, :, 0:3, 4:7])
    np.testing.assert_array_equal(out[1], images[1, :, 3:6, 1:4])
    np.testing.assert_array_equal(augment.center_crop(images, 4), images[..., 1:5, 1:5])


def test_rescale_sets_the_smallest_side_and_keeps_constants():
    wide = np.full((2, 3, 4, 8), 0.25, dtype=np.float32)
    out = augment.rescale(wide, 6)
    assert out.shape == (2, 3, 6, 12) and out.dtype == np.float32
    np.testing.assert_allclose(out, 0.25, rtol=1e-6)
    assert augment.rescale(wide.transpose(0, 1, 3, 2), 6).shape == (2, 3, 12, 6)
    square = np.random.default_rng(0).random((2, 1, 10, 10)).astype(np.float32)
    np.testing.assert_allclose(augment.rescale(square, 14), data.resize_bilinear(square, 14), rtol=1e-6)
    assert augment.rescale(square, 10) is square


def test_intensity_shift_is_one_offset_per_image_of_sigma_times_std():
    images, _ = _dataset(n=2, size=8)
    mean, cov = augment.pixel_statistics(images)
    assert mean.shape == (1,) and cov.shape == (1, 1)
    np.testing.assert_allclose(mean[0], images.mean() / 255, rtol=1e-9)
    np.testing.assert_allclose(cov[0, 0], (images / 255).var(), rtol=1e-9)
    transform = augment.Augment(shift=0.1, covariance=cov)
    zeros = np.zeros((4000, 1, 3, 3), dtype=np.float32)
    out = transform(zeros, np.random.default_rng(1))
    assert out.dtype == np.float32 and out.shape == zeros.shape
    offsets = out[:, 0, 0, 0]
    assert np.all(out == offsets[:, None, None, None])  # the whole image moves by one offset
    std = np.sqrt(cov[0, 0])
    assert abs(offsets.mean()) < 0.1 * std * 4 / np.sqrt(4000)
    np.testing.assert_allclose(offsets.std(), 0.1 * std, rtol=0.05)


def test_colour_shift_follows_the_pixels_covariance():
    """AlexNet's PCA shift: offsets sum_j alpha_j sqrt(lambda_j) p_j have covariance sigma^2 C."""
    cov = np.array([[0.09, 0.05, 0.02], [0.05, 0.08, 0.03], [0.02, 0.03, 0.06]])
    transform = augment.Augment(shift=0.1, covariance=cov)
    out = transform(np.zeros((20000, 3, 2, 2), dtype=np.float32), np.random.default_rng(2))
    offsets = out[:, :, 0, 0].astype(np.float64)
    np.testing.assert_allclose(np.cov(offsets.T), 0.01 * cov, atol=2e-5)


def test_mean_subtraction_centres_each_channel():
    images, _ = _dataset(n=30, size=6, channels=3)
    mean, cov = augment.pixel_statistics(images, chunk=7)  # chunks add up to the whole
    pixels = np.moveaxis(images, 1, -1).reshape(-1, 3) / 255
    np.testing.assert_allclose(mean, pixels.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(cov, np.cov(pixels.T, bias=True), atol=1e-12)
    loader = data.DataLoader((images, np.zeros(30)), 30, augment=augment.Augment(mean=mean, train=False))
    x = _batches(loader)[0][0]
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, images / 255 - mean[None, :, None, None], atol=1e-6)
    np.testing.assert_allclose(x.mean(axis=(0, 2, 3)), 0, atol=1e-6)


def test_flips_of_the_loader_apply_after_the_augmentation():
    images, labels = _dataset(n=50, size=6)
    transform = augment.Augment(mean=[0.5], train=False)
    x = _batches(data.DataLoader((images, labels), 50, flip=True, seed=1, augment=transform))[0][0]
    plain = images[:, None] / 255 - 0.5
    same = [np.allclose(x[i], plain[i], atol=1e-6) for i in range(50)]
    mirrored = [np.allclose(x[i], plain[i][..., ::-1], atol=1e-6) for i in range(50)]
    assert all(s or m for s, m in zip(same, mirrored)) and 10 < sum(mirrored) < 40


def test_random_crops_come_from_the_rescaled_image():
    """With a fixed scale every crop is a window of the rescaled image; positions vary across images."""
    images, labels = _dataset(n=64, size=12)
    transform = augment.Augment(crop=8, scale=12)
    x = _batches(data.DataLoader((images, labels), 64, augment=transform))[0][0]
    assert x.shape == (64, 1, 8, 8) and x.dtype == np.float32
    full = images[:, None] / np.float32(255)
    positions = []
    for i in range(64):
        found = [(t, l) for t in range(5) for l in range(5) if np.allclose(x[i], full[i, :, t:t + 8, l:l + 8])]
        assert found, f"image {i}: not a window of the image"
        positions.append(found[0])
    assert len(set(positions)) > 10


def _paper_like(**kwargs):
    cov = np.array([[0.1]])
    return augment.Augment(crop=8, scale=11, jitter=(9, 14), shift=0.1, covariance=cov, mean=[0.3], **kwargs)


def test_draws_depend_on_seed_epoch_and_batch_only():
    images, labels = _dataset(n=40)

    def loader(seed=3):
        return data.DataLoader((images, labels), 16, shuffle=True, seed=seed, flip=True, augment=_paper_like())

    first = loader()
    epoch0 = _batches(first)
    epoch1 = _batches(first)  # the loader moved on to epoch 1
    first.set_epoch(0)
    for (a, la), (b, lb) in zip(epoch0, _batches(first)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(epoch0[0][0], epoch1[0][0])
    resumed = loader()  # a new loader set to epoch 1, as a resumed run makes it
    resumed.set_epoch(1)
    for (a, _), (b, _) in zip(epoch1, _batches(resumed)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(_batches(loader(seed=4))[0][0], epoch0[0][0])
    scales = {_paper_like()(np.zeros((1, 1, 12, 12), np.float32), np.random.default_rng([3, 0, 2, b])).shape
              for b in range(20)}
    assert scales == {(1, 1, 8, 8)}  # every scale ends in the same crop


def test_evaluation_is_the_centre_crop_at_the_test_scale():
    images, labels = _dataset(n=8)
    transform = _paper_like().evaluation()
    loader = data.DataLoader((images, labels), 8, augment=transform)
    x = _batches(loader)[0][0]
    expected = augment.rescale(images[:, None] / np.float32(255), 11)[..., 1:9, 1:9] - np.float32(0.3)
    np.testing.assert_allclose(x, expected, atol=1e-6)
    np.testing.assert_array_equal(_batches(loader)[0][0], x)  # nothing random: the next epoch is the same


def test_augmentation_runs_on_the_device_without_synchronizing(cuda_device):
    """Images cross the bus as uint8 and stay there; only the host-drawn numbers follow them; no batch makes
    the host wait. The draws are NumPy's on both devices, so the batches equal the CPU's."""
    images, labels = _dataset(n=24, size=12, channels=3)
    mean, cov = augment.pixel_statistics(images)
    transform = augment.Augment(crop=8, scale=11, jitter=(9, 14), shift=0.1, covariance=cov, mean=mean)
    options = dict(shuffle=True, seed=5, flip=True, augment=transform)
    cpu = _batches(data.DataLoader((images, labels), 8, **options))
    loader = data.DataLoader((images, labels), 8, device=cuda_device.device, **options)
    on_device = []
    if cuda_device.strict:
        cuda_device.stats.update(device_to_host=0, sync=0)
    for x, y in loader:
        assert backend.device_of(x.data) == "cuda:0" and x.dtype == np.float32 and x.shape == (8, 3, 8, 8)
        on_device.append(x.data)
    if cuda_device.strict:
        assert cuda_device.stats["sync"] == 0 and cuda_device.stats["device_to_host"] == 0
    for (expected, _), got in zip(cpu, on_device):
        np.testing.assert_allclose(backend.to_numpy(got), expected, rtol=1e-5, atol=1e-6)


def test_augment_refuses_a_crop_that_does_not_fit():
    with pytest.raises(ValueError, match="does not fit"):
        augment.Augment(crop=10, jitter=(9, 14))
    with pytest.raises(ValueError, match="S_min <= S_max"):
        augment.Augment(crop=8, jitter=(14, 9))
    with pytest.raises(ValueError, match="covariance"):
        augment.Augment(shift=0.1)


# ---------------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------------
def _config(argv, device="cpu"):
    parser = cli.build_parser()
    args = parser.parse_args(["train", *argv])
    cli.check_args(parser.commands["train"], args)
    return recipe.fill_defaults({k: getattr(args, k) for k in recipe.FLAGS}, device)


def test_the_paper_preset_and_explicit_options_over_it():
    config = _config(["--recipe", "paper"])
    assert (config["lr"], config["momentum"], config["batch_size"], config["weight_decay"]) == (0.01, 0.9, 256, 5e-4)
    assert (config["scheduler"], config["nesterov"], config["clip_grad_norm"]) == ("plateau", False, 0.0)
    assert (config["crop"], config["scale_jitter"], config["resize"]) == (32, [36, 44], 40)
    assert config["flip"] and config["subtract_mean"] and config["intensity_shift"] == 0.1
    assert recipe.input_size(config) == 32
    gpu = _config(["--recipe", "paper"], device="cuda")
    assert (gpu["crop"], gpu["scale_jitter"], gpu["resize"]) == (224, [256, 512], 384)
    mine = _config(["--recipe", "paper", "--lr", "0.05", "--weight-decay", "0", "--no-flip", "--crop", "34",
                    "--intensity-shift", "0"])
    assert (mine["lr"], mine["weight_decay"], mine["flip"], mine["crop"], mine["intensity_shift"]) == (
        0.05, 0.0, False, 34, 0.0)
    plain = _config([])
    assert (plain["crop"], plain["flip"], plain["weight_decay"], plain["resize"]) == (None, False, 0.0, 32)
    assert recipe.build_augment(plain) == (None, None)
    jittered = _config(["--scale-jitter", "40", "56"])
    assert (jittered["crop"], jittered["resize"]) == (32, 48)  # the device's input size, tested at the middle


AUGMENT_MISTAKES = [
    (["--scale-jitter", "44", "36"], ["argument --scale-jitter", "MIN must be <= MAX", "44 36"]),
    (["--scale-jitter", "36"], ["argument --scale-jitter", "expected 2 arguments"]),
    (["--scale-jitter", "0", "36"], ["argument --scale-jitter", "integer >= 1", "got 0"]),
    (["--crop", "0"], ["argument --crop", "integer >= 1", "got 0"]),
    (["--crop", "40"], ["argument --crop", "at most the scale --resize = 32", "got 40"]),
    (["--crop", "16", "--resize", "40"], ["argument --crop", "integer >= 32", "got 16"]),
    (["--recipe", "paper", "--crop", "40"], ["argument --crop", "smallest scale", "MIN = 36", "got 40"]),
    (["--scale-jitter", "30", "40", "--crop", "32"], ["argument --crop", "MIN = 30", "got 32"]),
    (["--intensity-shift", "-0.1"], ["argument --intensity-shift", ">= 0", "got -0.1"]),
    (["--recipe", "alexnet"], ["argument --recipe", "invalid choice", "paper"]),
]


@pytest.mark.parametrize("mistake, expected", AUGMENT_MISTAKES, ids=[" ".join(m) for m, _ in AUGMENT_MISTAKES])
def test_invalid_augmentation_options_are_usage_errors(tmp_path, capsys, mistake, expected):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", *mistake, "--out", str(tmp_path / "run")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: minivgg train") and all(part in err for part in expected), err
    assert not (tmp_path / "run").exists()


def _train(*argv):
    return cli.main(["train", "--ratio", "16", "--no-progress", "--data", data.DEBIAN_DIR, *argv])


@needs_data
def test_a_short_run_of_the_paper_recipe(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train("--recipe", "paper", "--limit-batches", "2", "--epochs", "1", "--out", str(out)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "at 32x32, batch 256, SGD lr 0.01 momentum 0.9, plateau schedule" in lines[0]
    assert lines[1].startswith("paper recipe: random 32x32 crops of images rescaled to a scale in [36, 44]")
    assert "flips" in lines[1] and "mean subtracted" in lines[1] and "weight decay 0.0005" in lines[1]
    config = mv.load(out / "checkpoint.npz")["config"]
    assert (config["recipe"], config["crop"], config["scale_jitter"]) == ("paper", 32, [36, 44])
    assert len(config["pixel_mean"]) == 1 and 0.2 < config["pixel_mean"][0] < 0.4  # Fashion-MNIST: 0.286
    assert cli.main(["evaluate", str(out), "--data", data.DEBIAN_DIR]) == 0
    assert "test accuracy" in capsys.readouterr().out


@needs_data
def test_resume_of_the_paper_recipe_is_exact(tmp_path):
    common = ["--recipe", "paper", "--train-limit", "256", "--limit-batches", "4", "--batch-size", "32"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _train(*common, "--epochs", "2", "--out", str(straight)) == 0
    assert _train(*common, "--epochs", "1", "--out", str(split)) == 0
    # The recipe comes back from the config; the data's limits are options of the command, not of the run.
    assert _train("--train-limit", "256", "--limit-batches", "4", "--epochs", "2", "--resume", str(split)) == 0
    a, b = mv.load(straight / "checkpoint.npz"), mv.load(split / "checkpoint.npz")
    assert a["config"] == b["config"]
    for key in a["model"]:
        np.testing.assert_array_equal(a["model"][key], b["model"][key])


def test_mean_and_std_normalize_each_channel_as_imagenet_weights_expect():
    images = np.random.default_rng(0).random((2, 3, 5, 5), dtype=np.float32)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    out = augment.Augment(mean=mean, std=std, train=False)(images, None)
    expected = (images - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None]
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out.dtype == np.float32
    assert augment.Augment(mean=mean, std=std).evaluation().std == std  # the test side divides too
    with pytest.raises(ValueError, match="give mean too"):
        augment.Augment(std=std)
