"""Every file a user gives is checked before use: a damaged checkpoint or data file, swapped files, a folder
named for the data that does not hold it. Each is refused with one line naming the file and what to do."""
import gzip
import io
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import minivgg as mv
from minivgg import checkpoint, data, recipe, serialization, train
from minivgg.config import RunConfig
from minivgg.serialization import CheckpointError

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # chmod does not stop root from reading


# ---------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    """The bytes of a real run's checkpoint: a tiny network after one SGD step (so momentum buffers exist)."""
    config = RunConfig(ratio=64, resize=32, epochs=1).fill_defaults("cpu")
    net = recipe.build_model(config, "cpu")
    optimizer, scheduler = recipe.build_optimizer(net, config, 1)
    train.classification_loss(net(mv.tensor(np.zeros((2, 1, 32, 32), np.float32))), mv.tensor(np.zeros(2, np.int64))
                              ).backward()
    optimizer.step()
    state = train.training_state(net, optimizer, scheduler, 1, {"epochs": [], "points": []}, config.to_dict())
    path = tmp_path_factory.mktemp("good") / train.CHECKPOINT
    mv.save(state, path)
    return path.read_bytes()


@pytest.fixture
def run(tmp_path, good_checkpoint):
    """A run folder holding a copy of the good checkpoint (tests damage it)."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / train.CHECKPOINT).write_bytes(good_checkpoint)
    return folder


def _entry(raw, word):
    """(name, offset of its data, its size) of the largest zip entry whose name holds `word`."""
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        info = max((i for i in archive.infolist() if word in i.filename), key=lambda i: i.file_size)
    header = raw[info.header_offset:info.header_offset + 30]
    name_len, extra_len = int.from_bytes(header[26:28], "little"), int.from_bytes(header[28:30], "little")
    return info.filename[:-len(".npy")], info.header_offset + 30 + name_len + extra_len, info.file_size


def _damage(path, offset, new):
    raw = bytearray(path.read_bytes())
    raw[offset:offset + len(new)] = new
    path.write_bytes(bytes(raw))


def test_a_good_checkpoint_loads_and_passes_the_checks(run):
    path = run / train.CHECKPOINT
    state = checkpoint.load_checkpoint(path)
    assert state["epoch"] == 1 and any("momentum_buffer" in k for k in _keys(state["optimizer"]))
    assert checkpoint.read_config(path)["ratio"] == 64


def _keys(tree, prefix=""):
    for key, value in tree.items():
        yield from _keys(value, f"{prefix}{key}/") if isinstance(value, dict) else [prefix + key]


def test_truncated(run):
    path = run / train.CHECKPOINT
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    for read in (mv.load, checkpoint.read_config):
        with pytest.raises(CheckpointError, match=f"{path} is damaged .*not a complete .npz.*earlier copy"):
            read(path)


def test_flipped_bytes_inside_an_entry_fail_its_crc(run):
    path = run / train.CHECKPOINT
    name, start, size = _entry(path.read_bytes(), "momentum_buffer")
    _damage(path, start + size // 2, b"\xff" * 8)  # inside the array's data, past its header
    with pytest.raises(CheckpointError, match=f"damaged \\(entry '{name}' fails its CRC-32 check\\)"):
        mv.load(path)
    assert checkpoint.read_config(path)["ratio"] == 64  # the config alone is intact


def test_damaged_header(run):
    path = run / train.CHECKPOINT
    name, start, _ = _entry(path.read_bytes(), "momentum_buffer")
    _damage(path, start + 1, b"XXXXX")  # the .npy magic string
    with pytest.raises(CheckpointError, match=f"entry '{name}' has a damaged header"):
        mv.load(path)


def test_a_header_claiming_objects_is_damage_not_pickle(run):
    path = run / train.CHECKPOINT
    raw = path.read_bytes()
    name, start, _ = _entry(raw, "momentum_buffer")
    at = raw.index(b"'<f4'", start)
    _damage(path, at, b"'|O' ")
    with pytest.raises(CheckpointError, match=f"entry '{name}' holds pickled \\(object\\) data"):
        mv.load(path)


@pytest.mark.parametrize("ratio,expected", [(0, "ratio \\(--ratio\\) must be an integer >= 1, got 0"),
                                            ("4", "ratio \\(--ratio\\) must be an integer >= 1, got '4'")])
def test_an_edited_config(run, ratio, expected):
    path = run / train.CHECKPOINT
    state = mv.load(path)
    state["config"]["ratio"] = ratio
    mv.save(state, path)
    with pytest.raises(CheckpointError, match=f"{path}: its run config is wrong: {expected}"):
        checkpoint.load_checkpoint(path)
    with pytest.raises(CheckpointError, match=expected):
        checkpoint.read_config(path)


@pytest.mark.parametrize("key", ["model", "optimizer", "epoch", "config"])
def test_a_missing_part(run, key):
    path = run / train.CHECKPOINT
    state = mv.load(path)
    del state[key]
    mv.save(state, path)
    with pytest.raises(CheckpointError, match=f"not a complete run checkpoint: no {key} "):
        checkpoint.load_checkpoint(path)


def test_a_part_of_the_wrong_kind(run):
    path = run / train.CHECKPOINT
    state = mv.load(path)
    with pytest.raises(CheckpointError, match="entry 'epoch' must be a whole number >= 0, got '1'"):
        checkpoint.check_checkpoint(dict(state, epoch="1"), path)
    with pytest.raises(CheckpointError, match="entry 'history' must be a dict, got list"):
        checkpoint.check_checkpoint(dict(state, history=[]), path)


def test_save_refuses_an_object_array(tmp_path):
    path = tmp_path / "objects.npz"
    with pytest.raises(TypeError, match="'a' is an array of Python objects"):
        mv.save({"a": np.array([1, "x"], dtype=object)}, path)
    with pytest.raises(TypeError, match="'outer/b' is an array of Python objects"):
        mv.save({"outer": {"b": np.array([None])}}, path)
    assert not os.listdir(tmp_path)  # nothing half-written


def test_missing_unreadable_or_a_folder_is_not_called_damaged(tmp_path, run):
    with pytest.raises(FileNotFoundError, match="no file at .*nothing.npz"):
        mv.load(tmp_path / "nothing.npz")
    folder = tmp_path / "folder.npz"
    folder.mkdir()
    with pytest.raises(CheckpointError, match="is a folder, not a .npz file") as error:
        mv.load(folder)
    assert "damaged" not in str(error.value)
    if not AS_ROOT:
        path = run / train.CHECKPOINT
        path.chmod(0)
        with pytest.raises(CheckpointError, match="cannot be read: permission denied; fix its permissions"):
            mv.load(path)


def _cli(*argv, env=None):
    return subprocess.run([sys.executable, "-m", "minivgg", *map(str, argv)], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, **(env or {})))


def _one_line_error(result, command, *words):
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"minivgg {command}: error: "), result.stderr
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize("argv", [["evaluate", "{run}"], ["train", "--resume", "{run}", "--epochs", "2"],
                                  ["inspect", "--run", "{run}"]])
def test_the_cli_names_a_damaged_checkpoint(run, argv):
    path = run / train.CHECKPOINT
    name, start, size = _entry(path.read_bytes(), "momentum_buffer")
    _damage(path, start + size // 2, b"\xff" * 8)
    result = _cli(*[a.format(run=run) for a in argv])
    _one_line_error(result, argv[0], str(path), "is damaged", name, "CRC-32")


def test_the_cli_names_a_truncated_checkpoint(run):
    path = run / train.CHECKPOINT
    path.write_bytes(path.read_bytes()[:1000])
    _one_line_error(_cli("evaluate", run, "--scales", "32"), "evaluate", str(path), "is damaged")


def test_the_cli_names_an_edited_config(run):
    path = run / train.CHECKPOINT
    state = mv.load(path)
    state["config"]["ratio"] = 0
    mv.save(state, path)
    _one_line_error(_cli("evaluate", run), "evaluate", "ratio", "got 0")


# ---------------------------------------------------------------------------------------------------
# Fashion-MNIST files
# ---------------------------------------------------------------------------------------------------
def _images(count, rng=None):
    rng = rng or np.random.default_rng(0)
    header = b"".join(v.to_bytes(4, "big") for v in (2051, count, 28, 28))
    return header + rng.integers(0, 8, count * 28 * 28, dtype=np.uint8).tobytes()


def _labels(count):
    return (2049).to_bytes(4, "big") + count.to_bytes(4, "big") + bytes(count)


def _write(folder, name, raw):
    folder.mkdir(exist_ok=True)
    path = folder / (name + ".gz")
    path.write_bytes(gzip.compress(raw, mtime=0))
    return path


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No user cache, no $MINIVGG_DATA, no Debian folder, no network: only what a test puts in place."""
    monkeypatch.setattr(data.fashion_mnist, "cache_dir", lambda: str(tmp_path / "cache"))
    monkeypatch.setattr(data.fashion_mnist, "DEBIAN_DIR", str(tmp_path / "debian"))
    monkeypatch.delenv("MINIVGG_DATA", raising=False)
    monkeypatch.setattr(data.fashion_mnist.urllib.request, "urlopen", lambda *a, **k: pytest.fail("no download expected"))
    return tmp_path


def _test_split(folder, images=None, labels=None):
    images_name, labels_name = data.FILES["test"]
    return (_write(folder, images_name, _images(10000) if images is None else images),
            _write(folder, labels_name, _labels(10000) if labels is None else labels))


def test_a_damaged_deflate_block(isolated):
    images, _ = _test_split(isolated / "d")
    _damage(images, 12, bytes(b ^ 0xFF for b in images.read_bytes()[12:20]))
    with pytest.raises(data.DatasetError, match=f"{images}: the file is truncated or corrupt .*Delete it"):
        data.load_fashion_mnist("test", root=str(isolated / "d"))


def test_a_damaged_deflate_block_in_the_cache_says_delete_and_run_again(isolated):
    images, _ = _test_split(isolated / "cache")
    _damage(images, 12, bytes(b ^ 0xFF for b in images.read_bytes()[12:20]))
    with pytest.raises(data.DatasetError, match="truncated or corrupt .*Delete it and run again to download"):
        data.load_fashion_mnist("test")


def test_swapped_image_and_label_files(isolated):
    folder = isolated / "swapped"
    images_name, labels_name = data.FILES["test"]
    _write(folder, images_name, _labels(10000))
    _write(folder, labels_name, _images(10000))
    with pytest.raises(data.DatasetError, match=f"{folder / images_name}.gz holds the labels and "
                                                f"{folder / labels_name}.gz the images: the two files are swapped"):
        data.load_fashion_mnist("test", root=str(folder))


def test_an_images_file_under_the_labels_name(isolated):
    folder = isolated / "twice"
    _test_split(folder, labels=_images(10000))
    with pytest.raises(data.DatasetError, match="t10k-labels-idx1-ubyte.gz holds images \\(IDX magic number 2051\\), "
                                                "not labels \\(2049\\)"):
        data.load_fashion_mnist("test", root=str(folder))


def test_images_and_labels_of_different_counts(isolated):
    folder = isolated / "counts"
    _, labels = _test_split(folder, labels=_labels(9999))
    with pytest.raises(data.DatasetError, match=f"holds 10000 items but .* holds 9999: .*not a pair; {labels}"):
        data.load_fashion_mnist("test", root=str(folder))


def test_a_folder_in_place_of_a_data_file(isolated):
    folder = isolated / "d"
    _test_split(folder)
    images = folder / (data.FILES["test"][0] + ".gz")
    images.unlink()
    images.mkdir()
    with pytest.raises(data.DatasetError, match=f"{images} is a folder, not a data file") as error:
        data.load_fashion_mnist("test", root=str(folder))
    assert "Delete" not in str(error.value) and "corrupt" not in str(error.value)


@pytest.mark.skipif(AS_ROOT, reason="root reads files whatever their permissions")
def test_a_data_file_without_read_permission(isolated):
    images, _ = _test_split(isolated / "d")
    images.chmod(0)
    with pytest.raises(data.DatasetError, match="cannot be read: permission denied; fix its permissions") as error:
        data.load_fashion_mnist("test", root=str(isolated / "d"))
    assert "Delete" not in str(error.value) and "corrupt" not in str(error.value)


def test_an_empty_data_folder_is_an_error_not_the_systems_copy(isolated):
    _test_split(isolated / "cache")  # a good copy elsewhere must not be used instead
    empty = isolated / "empty"
    empty.mkdir()
    with pytest.raises(data.DatasetError, match=f"data folder {empty} has no t10k-images-idx3-ubyte\\(.gz\\) and "
                                                "no t10k-labels-idx1-ubyte\\(.gz\\) \\(the test split\\)"):
        data.load_fashion_mnist("test", root=str(empty))


def test_a_data_folder_with_the_training_files_only(isolated):
    folder = isolated / "train-only"
    folder.mkdir()
    _test_split(isolated / "cache")
    for name in data.FILES["train"]:
        _write(folder, name, b"")
    with pytest.raises(data.DatasetError, match=f"data folder {folder} has no t10k-images.*\\(the test split\\)"):
        data.load_fashion_mnist("test", root=str(folder))


def test_minivgg_data_naming_no_folder(isolated, monkeypatch):
    _test_split(isolated / "cache")
    monkeypatch.setenv("MINIVGG_DATA", "/nonexistent")
    with pytest.raises(data.DatasetError, match="MINIVGG_DATA=/nonexistent does not exist: name the folder"):
        data.load_fashion_mnist("test")
    good = isolated / "good"
    _test_split(good)
    _accept_as_fashion_mnist(monkeypatch, _images(10000), _labels(10000))
    assert data.load_fashion_mnist("test", root=str(good))[0].shape == (10000, 28, 28)  # root wins over it


def _accept_as_fashion_mnist(monkeypatch, images, labels):
    """Make made-up test files pass the contents check, as if they were Fashion-MNIST's."""
    import hashlib

    for name, raw in zip(data.FILES["test"], (images, labels)):
        monkeypatch.setitem(data.fashion_mnist.SHA256, name, hashlib.sha256(raw).hexdigest())


def test_an_uncompressed_copy_with_changed_labels_is_refused(isolated, monkeypatch):
    import shutil

    copy = isolated / "copy"
    copy.mkdir()
    for name in data.FILES["test"] + data.FILES["train"]:
        with gzip.open(os.path.join(data.DEBIAN_DIR, name + ".gz")) as src, open(copy / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    assert data.load_fashion_mnist("train", root=str(copy))[1].max() == 9  # the intact copy loads
    labels = bytearray((copy / "train-labels-idx1-ubyte").read_bytes())
    labels[8:] = bytes(len(labels) - 8)  # every label 0
    (copy / "train-labels-idx1-ubyte").write_bytes(bytes(labels))
    with pytest.raises(data.DatasetError, match="train-labels-idx1-ubyte: its contents are not Fashion-MNIST's.*"
                                                "the file was changed. Delete it and put an intact copy there"):
        data.load_fashion_mnist("train", root=str(copy))
    result = _cli("train", "--ratio", "16", "--train-limit", "64", "--batch-size", "64", "--limit-batches", "1",
                  "--epochs", "1", "--no-progress", "--data", copy, "--out", isolated / "run")
    _one_line_error(result, "train", "train-labels-idx1-ubyte", "its contents are not Fashion-MNIST's")
    assert not (isolated / "run").exists()


def test_a_checked_file_is_not_hashed_again_until_it_changes(isolated, monkeypatch):
    folder = isolated / "good"
    _test_split(folder)
    _accept_as_fashion_mnist(monkeypatch, _images(10000), _labels(10000))
    hashed = []
    real = data.fashion_mnist.hashlib.sha256
    monkeypatch.setattr(data.fashion_mnist.hashlib, "sha256", lambda raw: hashed.append(1) or real(raw))
    data.load_fashion_mnist("test", root=str(folder))
    data.load_fashion_mnist("test", root=str(folder))
    assert len(hashed) == 2  # each file once
    path = folder / (data.FILES["test"][1] + ".gz")
    path.write_bytes(gzip.compress(_labels(10000)[:-1] + b"\x01", mtime=0))  # a label changed, same size
    os.utime(path, ns=(0, 0))
    with pytest.raises(data.DatasetError, match="its contents are not Fashion-MNIST's"):
        data.load_fashion_mnist("test", root=str(folder))


def test_the_cli_names_a_data_folder_without_the_files(tmp_path):
    result = _cli("inspect", "--ratio", "64", "--resize", "32", "--out", tmp_path,
                  env={"MINIVGG_DATA": str(tmp_path / "nonexistent")})
    _one_line_error(result, "inspect", f"MINIVGG_DATA={tmp_path / 'nonexistent'} does not exist")


def test_permission_denied_is_told_apart_from_damage_even_as_root(isolated, run, monkeypatch):
    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", os.fspath(path))

    images, _ = _test_split(isolated / "d")
    monkeypatch.setattr(data.fashion_mnist.gzip, "open", denied)
    with pytest.raises(data.DatasetError, match=f"{images} cannot be read: permission denied") as error:
        data.load_fashion_mnist("test", root=str(isolated / "d"))
    assert "Delete" not in str(error.value) and "corrupt" not in str(error.value)
    monkeypatch.setattr(serialization.zipfile, "ZipFile", denied)
    with pytest.raises(CheckpointError, match="cannot be read: permission denied; fix its permissions") as error:
        mv.load(run / train.CHECKPOINT)
    assert "damaged" not in str(error.value)
