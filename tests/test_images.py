"""Your own images: `data.ImageFolder` (PNG and JPEG through Pillow, one sub-folder per class) and its seeded
split, the binary cross-entropy with logits (gradcheck, and torch's values where torch is installed), a
single-logit network trained by `fit`, and `minivgg train --data-dir` / `minivgg evaluate` on a folder."""
import os
import re
import shutil
import sys

import numpy as np
import pytest

import minivgg as mv
from minivgg import cli, data, load, nn, optim, train
from minivgg import functional as F

Image = pytest.importorskip("PIL.Image", reason="Pillow not installed (pip install -e \".[images]\")")

try:
    import torch
except ImportError:  # the crosscheck extra is optional
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed (pip install torch==2.13.0)")


def _save(path, array, **options):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path, **options)


def _stripes(rng, horizontal, size=16):
    """A grey image of stripes 2 pixels wide at a random phase, with noise: class 0 vertical, class 1
    horizontal. Brightness and contrast are the same in both, so only the orientation tells them apart."""
    phase = rng.integers(0, 4)
    line = np.where((np.arange(size) + phase) % 4 < 2, 200.0, 55.0)
    image = np.broadcast_to(line[:, None] if horizontal else line[None, :], (size, size))
    return np.clip(image + rng.normal(0, 25, (size, size)), 0, 255)


def _stripe_folder(root, per_class=60, seed=0):
    rng = np.random.default_rng(seed)
    for name, horizontal in (("horizontal", True), ("vertical", False)):
        for i in range(per_class):
            _save(os.path.join(root, name, f"{i:03d}.png"), _stripes(rng, horizontal))
    return root


# ---- ImageFolder -------------------------------------------------------------------------------------------
def test_image_folder_reads_grey_png_and_colour_jpeg_and_skips_what_is_not_an_image(tmp_path):
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    _save(tmp_path / "cat" / "a.png", grey)
    _save(tmp_path / "cat" / "b.png", np.stack([grey, grey // 2, grey // 3], axis=2))       # RGB PNG
    _save(tmp_path / "dog" / "c.jpg", np.full((6, 8, 3), (250, 10, 10)), quality=100)        # JPEG
    _save(tmp_path / "dog" / "d.jpeg", np.full((6, 8), 90), quality=100)                     # grey JPEG
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    (tmp_path / "dog" / ".hidden.png").write_bytes(b"ignored: hidden")
    (tmp_path / "README").write_text("a file beside the class folders is no class")
    with pytest.warns(UserWarning) as caught:
        folder = data.ImageFolder(str(tmp_path))
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2
    assert str(tmp_path / "dog" / "broken.png") in messages[0] and str(tmp_path / "dog" / "notes.txt") in messages[1]
    assert folder.classes == ["cat", "dog"] and folder.class_to_idx == {"cat": 0, "dog": 1}
    assert folder.labels.tolist() == [0, 0, 1, 1] and folder.labels.dtype == np.int64
    assert [os.path.basename(p) for p, _ in folder.samples] == ["a.png", "b.png", "c.jpg", "d.jpeg"]
    assert folder.images.dtype == np.uint8 and folder.images.shape == (4, 3, 6, 8)  # one colour image: all RGB
    assert (folder.images[0] == grey).all()                                          # grey copied to each channel
    assert (folder.images[1] == np.stack([grey, grey // 2, grey // 3])).all()
    assert np.abs(folder.images[2].astype(int) - np.array([250, 10, 10])[:, None, None]).max() <= 3
    assert np.abs(folder.images[3].astype(int) - 90).max() <= 2
    image, label = folder[2]
    assert image.shape == (3, 6, 8) and label == 1 and len(folder) == 4


def test_an_all_grey_folder_gives_one_channel_and_size_resizes(tmp_path):
    _save(tmp_path / "b" / "x.png", np.full((10, 12), 30))
    _save(tmp_path / "a" / "y.png", np.full((7, 5), 220))
    _save(tmp_path / "a" / "z.png", np.full((10, 12), 120))
    with pytest.raises(data.DatasetError) as error:
        data.ImageFolder(str(tmp_path))
    # The first image read sets the size; the message names the first file that differs from it, and the fix.
    assert str(tmp_path / "a" / "z.png") in str(error.value) and "size=" in str(error.value)
    folder = data.ImageFolder(str(tmp_path), size=4)
    assert folder.images.shape == (3, 1, 4, 4) and folder.labels.tolist() == [0, 0, 1]
    assert folder.images[0].min() == folder.images[0].max() == 220 and (folder.images[2] == 30).all()


def test_a_folder_without_classes_or_images_is_refused(tmp_path):
    with pytest.raises(data.DatasetError, match="no class sub-folders"):
        data.ImageFolder(str(tmp_path))
    (tmp_path / "empty_class").mkdir()
    _save(tmp_path / "full" / "x.png", np.zeros((4, 4)))
    with pytest.raises(data.DatasetError, match="empty_class"):
        data.ImageFolder(str(tmp_path))


def test_missing_pillow_names_the_extra(tmp_path, monkeypatch, capsys):
    _stripe_folder(str(tmp_path / "images"), per_class=2)
    monkeypatch.setitem(sys.modules, "PIL", None)  # `from PIL import Image` now raises ImportError
    monkeypatch.delitem(sys.modules, "PIL.Image", raising=False)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[images\]"'):
        data.ImageFolder(str(tmp_path / "images"))
    with pytest.raises(SystemExit) as stop:  # the command refuses before it starts: a usage error
        cli.main(["train", "--data-dir", str(tmp_path / "images"), "--out", str(tmp_path / "run")])
    assert stop.value.code == 2 and 'pip install -e ".[images]"' in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_split_is_seeded_disjoint_and_complete():
    images, labels = np.arange(50, dtype=np.uint8)[:, None, None, None], np.arange(50) % 2
    (train_x, train_y), (held_x, held_y) = data.split((images, labels), 0.2, seed=3)
    assert len(held_y) == 10 and len(train_y) == 40  # as Keras: int(0.2 * 50) held out
    assert sorted(train_x.ravel().tolist() + held_x.ravel().tolist()) == list(range(50))
    assert (labels[held_x.ravel()] == held_y).all()
    again = data.split((images, labels), 0.2, seed=3)[1][0]
    other = data.split((images, labels), 0.2, seed=4)[1][0]
    assert (again == held_x).all() and not (other == held_x).all()
    assert len(data.split((images[:3], labels[:3]), 0.1)[1][1]) == 1  # at least one held out


def test_the_data_loader_takes_channels(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 3, 6, 8), dtype=np.uint8)
    batch, labels = next(iter(data.DataLoader((images, np.arange(5)), 4)))
    assert batch.shape == (4, 3, 6, 8) and np.allclose(batch.numpy(), images[:4] / 255)
    assert next(iter(data.DataLoader((images, np.arange(5)), 4, resize=4)))[0].shape == (4, 3, 4, 4)
    grey = next(iter(data.DataLoader((images[:, 0], np.arange(5)), 4, resize=5)))[0]
    assert grey.shape == (4, 1, 5, 5)  # (N, H, W), as Fashion-MNIST's arrays: one channel


# ---- binary cross-entropy with logits ----------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits_gradcheck(rng, reduction):
    logits = mv.tensor(rng.standard_normal((4, 3)) * 3, dtype="float64", requires_grad=True)
    targets = mv.tensor(rng.random((4, 3)), dtype="float64", requires_grad=True)
    assert mv.gradcheck(lambda x, y: F.binary_cross_entropy_with_logits(x, y, reduction), [logits, targets])


@needs_torch
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_bce_with_logits_equals_torch(rng, reduction, scale):
    """Values and both gradients, in float32; at scale 1e4 exp(|x|) would overflow float32 in the naive
    formula, and both stay finite and agree."""
    x = (rng.standard_normal((5, 1)) * scale).astype(np.float32)
    x[:2, 0] = [scale * 3, -scale * 3]
    y = rng.random((5, 1)).astype(np.float32)
    y[0, 0], y[1, 0] = 1.0, 0.0
    ours_x, ours_y = mv.tensor(x, requires_grad=True), mv.tensor(y, requires_grad=True)
    theirs_x, theirs_y = torch.tensor(x, requires_grad=True), torch.tensor(y, requires_grad=True)
    ours = F.binary_cross_entropy_with_logits(ours_x, ours_y, reduction)
    theirs = torch.nn.functional.binary_cross_entropy_with_logits(theirs_x, theirs_y, reduction=reduction)
    weights = rng.standard_normal(x.shape).astype(np.float32)  # a gradient that differs entry by entry
    (ours * mv.tensor(weights) if reduction == "none" else ours).sum().backward()
    (theirs * torch.tensor(weights) if reduction == "none" else theirs).sum().backward()
    assert ours.shape == tuple(theirs.shape) and ours.dtype == np.float32
    assert np.isfinite(ours.numpy()).all()
    np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours_x.grad.numpy(), theirs_x.grad.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours_y.grad.numpy(), theirs_y.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_the_loss_modules_call_the_functions(rng):
    x, y = mv.tensor(rng.standard_normal((6, 1))), mv.tensor((rng.random((6, 1)) > 0.5).astype(np.float32))
    assert nn.BCEWithLogitsLoss()(x, y).item() == F.binary_cross_entropy_with_logits(x, y).item()
    assert nn.BCEWithLogitsLoss(reduction="none")(x, y).shape == (6, 1)
    logits, labels = mv.tensor(rng.standard_normal((6, 3))), mv.tensor(np.arange(6) % 3)
    assert nn.CrossEntropyLoss()(logits, labels).item() == F.cross_entropy(logits, labels).item()
    assert repr(nn.BCEWithLogitsLoss()) == "BCEWithLogitsLoss()"
    with pytest.raises(ValueError, match="reduction"):
        nn.BCEWithLogitsLoss(reduction="average")
    with pytest.raises(ValueError, match="same shape"):
        F.binary_cross_entropy_with_logits(x, y.reshape(6))
    # Integer targets are taken as floats, as a 0/1 label array usually comes.
    assert F.binary_cross_entropy_with_logits(x, np.ones((6, 1), dtype=np.int64)).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(x, np.ones((6, 1), dtype=np.float32)).item())


# ---- a single-logit network trained by fit -------------------------------------------------------------------
def test_a_single_logit_network_learns_two_classes_of_images(tmp_path):
    folder = data.ImageFolder(_stripe_folder(str(tmp_path / "stripes")))
    assert folder.classes == ["horizontal", "vertical"] and folder.images.shape == (120, 1, 16, 16)
    training, held_out = data.split(folder, 0.2, seed=0)
    train_loader = data.DataLoader(training, 16, shuffle=True)
    test_loader = data.DataLoader(held_out, 32)
    mv.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(4 * 8 * 8, 1))
    history = train.fit(net, train_loader, test_loader, optim.Adam(net.parameters(), lr=0.01), 6,
                        progress=False, print_fn=lambda *a: None)
    assert history["epochs"][-1]["test_acc"] >= 0.9  # chance is 0.5
    predicted, true = train.predict(net, test_loader)
    assert predicted.dtype == np.int64 and set(predicted.tolist()) <= {0, 1}
    assert (predicted == true).mean() == history["epochs"][-1]["test_acc"]
    with pytest.raises(ValueError, match="0 or 1"):  # a third class cannot be a single logit's
        train.classification_loss(net(next(iter(test_loader))[0]), mv.tensor(np.full(24, 2)))


# ---- the command line ------------------------------------------------------------------------------------
TINY = ["--arch", "d2l", "--ratio", "64", "--resize", "32", "--batch-size", "16", "--no-progress"]


def test_train_and_evaluate_on_a_folder(tmp_path, capsys):
    images, run = _stripe_folder(str(tmp_path / "images"), per_class=20), tmp_path / "run"
    _save(os.path.join(images, "vertical", "colour.jpg"), np.full((16, 16, 3), (40, 200, 90)))
    assert cli.main(["train", "--data-dir", images, "--val-split", "0.25", "--epochs", "1", "--out", str(run),
                     *TINY]) == 0
    banner = capsys.readouterr().out.splitlines()[0]
    assert "2 classes, 3 channels; 31 training and 10 held-out images" in banner and "at 32x32" in banner
    config = load(str(run / train.CHECKPOINT))["config"]
    assert config["data_dir"] == os.path.abspath(images) and config["val_split"] == 0.25
    assert config["classes"] == ["horizontal", "vertical"] and config["in_channels"] == 3
    assert config["num_classes"] == 2

    assert cli.main(["evaluate", str(run)]) == 0
    text = capsys.readouterr().out
    assert f"on 10 held-out images of {os.path.abspath(images)}" in text
    assert "horizontal" in text and "vertical" in text and (run / "confusion.png").exists()

    moved = str(tmp_path / "moved")
    shutil.move(images, moved)
    assert cli.main(["evaluate", str(run)]) == 1
    assert "--data-dir" in capsys.readouterr().err
    assert cli.main(["evaluate", str(run), "--data-dir", moved]) == 0
    assert "on 10 held-out images of" in capsys.readouterr().out
    assert cli.main(["train", "--resume", str(run), "--data-dir", moved, "--epochs", "2", "--no-progress"]) == 0
    assert "resuming after epoch 1" in capsys.readouterr().out
    assert load(str(run / train.CHECKPOINT))["epoch"] == 2

    os.rename(os.path.join(moved, "vertical"), os.path.join(moved, "upright"))
    assert cli.main(["evaluate", str(run), "--data-dir", moved]) == 1
    assert "the run was trained on horizontal, vertical" in capsys.readouterr().err


@pytest.mark.parametrize("mistake, expected", [
    (["--data-dir", "<missing>"], "argument --data-dir: no folder at"),
    (["--data-dir", "<no classes>"], "has no class sub-folders"),
    (["--data-dir", "<one class>"], "a classifier needs two at least"),
    (["--data-dir", "<images>", "--val-split", "0"], "argument --val-split: must be a finite number in (0, 1)"),
    (["--data-dir", "<images>", "--val-split", "1"], "in (0, 1), got 1"),
    (["--val-split", "0.2"], "argument --val-split: only with --data-dir"),
    (["--data-dir", "<images>", "--data", "<no classes>"], "not allowed with --data"),
])
def test_train_refuses_a_bad_folder_or_split(tmp_path, capsys, mistake, expected):
    places = {"<missing>": tmp_path / "missing", "<no classes>": tmp_path / "flat",
              "<one class>": tmp_path / "one", "<images>": tmp_path / "images"}
    _save(str(tmp_path / "flat" / "x.png"), np.zeros((4, 4)))
    _save(str(tmp_path / "one" / "only" / "x.png"), np.zeros((4, 4)))
    _stripe_folder(str(tmp_path / "images"), per_class=2)
    argv = ["train", *[str(places.get(a, a)) for a in mistake], "--out", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert expected in err.splitlines()[-1] and err.splitlines()[-1].startswith("minivgg train: error: ")
    assert not (tmp_path / "run").exists()


# ---- transfer learning from the command line ---------------------------------------------------------------
def _colour_stripe_folder(root, per_class=12):
    rng = np.random.default_rng(1)
    for name, horizontal in (("horizontal", True), ("vertical", False)):
        for i in range(per_class):
            _save(os.path.join(root, name, f"{i:03d}.png"), np.repeat(_stripes(rng, horizontal)[..., None], 3, 2))
    return root


def _pretrained_npz(path, seed=7):
    """A vgg11 (channels / 16) saved under torchvision's keys, standing in for downloaded ImageNet weights
    (1000 classes), and the arrays it holds."""
    from minivgg import models

    mv.manual_seed(seed)
    net = models.initialize(models.vgg_from_config("vgg11", 1000, in_channels=3, ratio=16), (1, 3, 32, 32))
    arrays = {key: p.numpy() for key, (_, p) in models._torchvision_names(net).items()}
    np.savez(path, **arrays)
    return arrays


def test_train_from_torchvision_weights_frozen_features_binary_head(tmp_path, capsys):
    """--torchvision-weights --freeze-features --binary: the convolutions start as the file's and never move
    (over a resume too), the dense layers start as the file's and learn, the last one is a new single logit,
    the inputs are normalized by ImageNet's statistics; evaluate and inspect read the run."""
    images, run = _colour_stripe_folder(str(tmp_path / "images")), tmp_path / "run"
    weights = _pretrained_npz(str(tmp_path / "vgg11.npz"))
    argv = ["--data-dir", images, "--arch", "vgg11", "--ratio", "16", "--resize", "32", "--batch-size", "8",
            "--lr", "0.01", "--no-progress"]
    assert cli.main(["train", *argv, "--torchvision-weights", str(tmp_path / "vgg11.npz"), "--freeze-features",
                     "--binary", "--epochs", "1", "--out", str(run)]) == 0
    printed = capsys.readouterr().out
    assert "a new last dense layer for 1 output" in printed and "ImageNet mean subtracted" in printed
    assert "frozen: 0, 1, 2, 3, 4 (the convolutional part)" in printed
    assert cli.main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    state = load(str(run / train.CHECKPOINT))
    config, model = state["config"], state["model"]
    assert state["epoch"] == 2 and config["binary"] and config["freeze_features"] and config["num_classes"] == 1
    assert config["pixel_mean"] == [0.485, 0.456, 0.406] and config["pixel_std"] == [0.229, 0.224, 0.225]
    from minivgg import models

    net = models.build("vgg11", 16, num_classes=1, in_channels=3)
    names = models._torchvision_names(models.initialize(net, (1, 3, 32, 32)))
    for key, (name, _) in names.items():
        saved = mv.backend.to_numpy(getattr(model[name], "data", model[name]))
        if key.startswith("features."):
            np.testing.assert_array_equal(saved, weights[key], err_msg=key)  # frozen, over two epochs
        elif key.startswith(("classifier.0.", "classifier.3.")):
            assert saved.shape == weights[key].shape and not np.array_equal(saved, weights[key]), key
        else:
            assert saved.shape == ((1, 4096) if key.endswith("weight") else (1,)), key
    assert cli.main(["evaluate", str(run)]) == 0
    assert "held-out images of" in capsys.readouterr().out
    assert cli.main(["inspect", "--run", str(run), "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "held-out images of" in table and re.search(r"Linear\s+\(\d+, 1\)", table)  # the single logit
    assert list(tmp_path.glob("graph.*"))


@pytest.mark.parametrize("mistake, expected", [
    (["--binary"], "argument --binary: only with --data-dir"),
    (["--torchvision-weights", "<npz>", "--arch", "d2l"], "fit --arch A, B, D or E"),
    (["--torchvision-weights", "<missing>", "--arch", "vgg16"], "argument --torchvision-weights: no file at"),
    (["--torchvision-weights", "<npz>", "--arch", "vgg11", "--init-from", "<run>"], "not allowed with --init-from"),
    (["--resume", "<run>", "--freeze-features"], "argument --freeze-features: not allowed with --resume"),
])
def test_transfer_options_are_refused_where_they_cannot_work(tmp_path, capsys, mistake, expected):
    places = {"<npz>": tmp_path / "w.npz", "<missing>": tmp_path / "missing.npz", "<run>": tmp_path / "run"}
    (tmp_path / "w.npz").write_bytes(b"")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / train.CHECKPOINT).write_bytes(b"")
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", *[str(places.get(a, a)) for a in mistake]])
    assert stop.value.code == 2
    assert expected in capsys.readouterr().err.splitlines()[-1]


def test_binary_refuses_a_folder_of_three_classes(tmp_path, capsys):
    images = _colour_stripe_folder(str(tmp_path / "images"), per_class=3)
    _save(os.path.join(images, "third", "x.png"), np.zeros((16, 16, 3)))
    assert cli.main(["train", "--data-dir", images, "--binary", "--out", str(tmp_path / "run"), *TINY]) == 1
    assert "holds 3 classes (horizontal, third, vertical); a single logit separates two" in capsys.readouterr().err


def test_pretrained_weights_of_the_wrong_size_name_the_input_size(tmp_path, capsys):
    _pretrained_npz(str(tmp_path / "w.npz"))
    images = _colour_stripe_folder(str(tmp_path / "images"), per_class=3)
    assert cli.main(["train", "--data-dir", images, "--arch", "vgg11", "--ratio", "16", "--resize", "64",
                     "--torchvision-weights", str(tmp_path / "w.npz"), "--out", str(tmp_path / "run"),
                     "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "first shape mismatch: classifier.0.weight" in err and "at 224x224 inputs" in err
