import gzip
import io
import os

import numpy as np
import pytest

from minivgg import data

try:
    import torch
except ImportError:  # the crosscheck extra is optional
    torch = None

HAVE_DEBIAN = os.path.isdir(data.DEBIAN_DIR)
needs_data = pytest.mark.skipif(not HAVE_DEBIAN, reason="install dataset-fashion-mnist (Debian) for real data")


def _idx_images(count, rows=28, cols=28, magic=2051, payload=None):
    header = magic.to_bytes(4, "big") + count.to_bytes(4, "big") + rows.to_bytes(4, "big") + cols.to_bytes(4, "big")
    return header + (payload if payload is not None else bytes(count * rows * cols))


def _idx_labels(count, magic=2049):
    return magic.to_bytes(4, "big") + count.to_bytes(4, "big") + bytes(count)


def _write_split(folder, split="test", images=None, labels=None, compress=True):
    count = data.COUNTS[split]
    names = data.FILES[split]
    for name, raw in zip(names, (images or _idx_images(count), labels or _idx_labels(count))):
        path = os.path.join(folder, name + (".gz" if compress else ""))
        with (gzip.open(path, "wb") if compress else open(path, "wb")) as f:
            f.write(raw)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No user cache, no $MINIVGG_DATA and no Debian folder: only what a test puts in place."""
    monkeypatch.setattr(data.fashion_mnist, "cache_dir", lambda: str(tmp_path / "cache"))
    monkeypatch.setattr(data.fashion_mnist, "DEBIAN_DIR", str(tmp_path / "debian"))
    monkeypatch.delenv("MINIVGG_DATA", raising=False)
    return tmp_path


@needs_data
def test_real_fashion_mnist_loads():
    x, y = data.load_fashion_mnist("test")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8 and y.shape == (10000,)
    assert set(np.unique(y)) == set(range(10)) and len(data.text_labels) == 10
    x, y = data.load_fashion_mnist("train")
    assert x.shape == (60000, 28, 28) and np.bincount(y).tolist() == [6000] * 10


def test_root_first_then_env(isolated, monkeypatch):
    for name, raw in zip(data.FILES["test"], (_idx_images(10000), _idx_labels(10000))):  # made-up files pass
        monkeypatch.setitem(data.fashion_mnist.SHA256, name, __import__("hashlib").sha256(raw).hexdigest())
    root = isolated / "root"
    root.mkdir()
    _write_split(root, compress=False)  # plain IDX files work too
    x, y = data.load_fashion_mnist("test", root=str(root), download=False)
    assert x.shape == (10000, 28, 28)
    env = isolated / "env"
    env.mkdir()
    _write_split(env)
    monkeypatch.setenv("MINIVGG_DATA", str(env))
    assert data.load_fashion_mnist("test", download=False)[0].shape == (10000, 28, 28)


def test_missing_files_without_download(isolated):
    with pytest.raises(data.DatasetError, match="t10k-images-idx3-ubyte.*not found.*dataset-fashion-mnist"):
        data.load_fashion_mnist("test", download=False)


@pytest.mark.parametrize("images,message", [
    (_idx_images(10000, magic=1234), "wrong magic number 1234"),
    (_idx_images(9999), "holds 9999 items"),
    (_idx_images(10000)[:-100], "truncated"),
])
def test_bad_files_name_the_file_and_the_fix(isolated, images, message):
    root = isolated / "bad"
    root.mkdir()
    _write_split(root, images=images)
    with pytest.raises(data.DatasetError, match=message) as info:
        data.load_fashion_mnist("test", root=str(root), download=False)
    assert "t10k-images-idx3-ubyte.gz" in str(info.value) and "Delete it" in str(info.value)


def test_truncated_gzip(isolated):
    root = isolated / "trunc"
    root.mkdir()
    _write_split(root)
    path = root / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(data.DatasetError, match="truncated or corrupt"):
        data.load_fashion_mnist("test", root=str(root), download=False)


class _FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_verifies_and_never_leaves_half_a_file(isolated, monkeypatch):
    good = _idx_labels(10000)
    monkeypatch.setitem(data.fashion_mnist.SHA256, "t10k-labels-idx1-ubyte", __import__("hashlib").sha256(good).hexdigest())
    served = {"t10k-labels-idx1-ubyte.gz": gzip.compress(good),
              "t10k-images-idx3-ubyte.gz": gzip.compress(_idx_images(10000))}  # the image hash will not match
    monkeypatch.setattr(data.fashion_mnist.urllib.request, "urlopen",
                        lambda url, timeout: _FakeResponse(served[url.rsplit("/", 1)[1]]))
    with pytest.raises(data.DatasetError, match="does not match the official contents"):
        data.load_fashion_mnist("test")
    cache = isolated / "cache"
    assert sorted(os.listdir(cache)) == []  # nothing half-written or unverified stays
    path = data.fashion_mnist._download("t10k-labels-idx1-ubyte", str(cache))
    assert os.listdir(cache) == ["t10k-labels-idx1-ubyte.gz"] and path.endswith(".gz")


def test_dataloader_batches_shapes_and_order():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 50)
    loader = data.DataLoader((images, labels), 16, shuffle=True, seed=3)
    batches = list(loader)
    assert len(loader) == 4 and [b[0].shape[0] for b in batches] == [16, 16, 16, 2]
    x, y = batches[0]
    assert x.shape == (16, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
    assert 0.0 <= x.numpy().min() and x.numpy().max() <= 1.0
    seen = np.concatenate([b[1].numpy() for b in batches])
    assert sorted(seen.tolist()) == sorted(labels.tolist())
    loader.set_epoch(0)
    again = [b[1].numpy() for b in loader]
    np.testing.assert_array_equal(np.concatenate(again), seen)  # same (seed, epoch): same order
    other = np.concatenate([b[1].numpy() for b in loader])  # next epoch: another order
    assert not np.array_equal(other, seen)
    assert len(data.DataLoader((images, labels), 16, drop_last=True)) == 3
    resized = next(iter(data.DataLoader((images, labels), 4, resize=32)))[0]
    assert resized.shape == (4, 1, 32, 32) and resized.dtype == np.float32
    normed = next(iter(data.DataLoader((images, labels), 50, normalize=(0.5, 0.25))))[0].numpy()
    np.testing.assert_allclose(normed, (images[:, None] / 255 - 0.5) / 0.25, rtol=1e-5, atol=1e-5)
    flipped = next(iter(data.DataLoader((images, labels), 50, flip=True, seed=1)))[0].numpy()
    plain = images[:, None] / 255
    same = [np.allclose(flipped[i], plain[i]) for i in range(50)]
    mirrored = [np.allclose(flipped[i], plain[i][..., ::-1]) for i in range(50)]
    assert all(s or m for s, m in zip(same, mirrored)) and 10 < sum(mirrored) < 40


def test_bilinear_resize_keeps_constants_and_matches_torch():
    m = data.bilinear_matrix(28, 224)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=1e-6)
    img = np.random.default_rng(0).random((2, 1, 28, 28)).astype(np.float32)
    out = data.resize_bilinear(img, 96)
    assert out.shape == (2, 1, 96, 96) and out.dtype == np.float32
    if torch is not None:
        ref = torch.nn.functional.interpolate(torch.tensor(img), size=(96, 96), mode="bilinear", align_corners=False)
        np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-6)


def test_resize_bilinear_takes_a_size_or_a_height_and_width():
    x = np.random.default_rng(0).random((2, 3, 6, 9)).astype(np.float32)
    assert data.resize_bilinear(x, (4, 12)).shape == (2, 3, 4, 12)
    np.testing.assert_array_equal(data.resize_bilinear(x, (5, 5)), data.resize_bilinear(x, 5))
    np.testing.assert_allclose(data.resize_bilinear(np.full((1, 1, 6, 9), 0.5, np.float32), (4, 12)), 0.5,
                               rtol=1e-6)
