"""Fashion-MNIST: find or download the IDX files, check them, and D2L's `load_data_fashion_mnist`.

Where: the folder the user names (`root`, else $MINIVGG_DATA), which must hold the files; with none named,
~/.cache/minivgg/fashion-mnist, Debian's /usr/share/datasets/fashion-mnist (package dataset-fashion-mnist),
failing those a download of the official files into the cache. Files may be gzipped or not. Checks use the decompressed bytes, because Debian
re-compressed the .gz files (their MD5 differs from the upstream README's, the contents do not).
"""
import gzip
import hashlib
import json
import os
import tempfile
import urllib.request
import zlib

import numpy as np

from ..files import write_text
from .loader import DataLoader

text_labels = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
               "ankle boot"]

FILES = {  # split -> (images file, labels file), without .gz
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
COUNTS = {"train": 60000, "test": 10000}
# SHA-256 of the decompressed files (identical upstream and in Debian's package).
SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
ELSEWHERE = "the cache, Debian's dataset-fashion-mnist or a download"


class DatasetError(ValueError):
    """A data file is missing, truncated or not what it claims to be."""


def cache_dir():
    return os.path.join(os.path.expanduser("~"), ".cache", "minivgg", "fashion-mnist")


def _named_dir(root=None):
    """(folder, how the user named it) for `root`, else $MINIVGG_DATA; None when neither is given."""
    if root:
        return os.fspath(root), "data folder"
    if os.environ.get("MINIVGG_DATA"):
        return os.environ["MINIVGG_DATA"], "MINIVGG_DATA="
    return None


def search_dirs(root=None):
    """Where the files are looked for: a folder the user named, alone (a wrong name is an error, never a
    silent fall back to another copy); with none named, the cache, then Debian's folder."""
    named = _named_dir(root)
    return [named[0]] if named else [cache_dir(), DEBIAN_DIR]


def _find(name, dirs):
    for d in dirs:
        for candidate in (os.path.join(d, name + ".gz"), os.path.join(d, name)):
            if os.path.exists(candidate):
                return candidate
    return None


def _fix(path):
    """What to do about a corrupt file, by where it lies."""
    folder = os.path.dirname(os.path.abspath(path))
    if folder == os.path.abspath(cache_dir()):
        return "Delete it and run again to download it afresh"
    if folder == os.path.abspath(DEBIAN_DIR):
        return "Reinstall Debian's copy: apt-get install --reinstall dataset-fashion-mnist"
    return f"Delete it and put an intact copy there ({URL}), or name no data folder to use {ELSEWHERE}"


def _read_bytes(path):
    """The file's bytes, decompressed to the end when gzipped, so that gzip checks its CRC and length."""
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    except PermissionError:
        raise DatasetError(f"{path} cannot be read: permission denied; fix its permissions "
                           f"(chmod a+r {path})") from None
    except IsADirectoryError:
        raise DatasetError(f"{path} is a folder, not a data file: move it out of the way and put the file "
                           "itself there") from None
    except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DatasetError(f"{path}: the file is truncated or corrupt ({exc}). {_fix(path)}") from None


def _magic(raw):
    return int.from_bytes(raw[0:4], "big") if len(raw) >= 4 else None


def parse_idx(raw, path, expected_count, kind=None):
    """IDX bytes -> uint8 array: (N, rows, cols) for images (magic 2051), (N,) for labels (2049). With
    `kind` ('images' or 'labels'), a file of the other kind is an error naming what it holds."""
    if len(raw) < 8:
        raise DatasetError(f"{path}: only {len(raw)} bytes, too short for an IDX header. {_fix(path)}")
    magic, count = _magic(raw), int.from_bytes(raw[4:8], "big")
    expected = {"images": IMAGES_MAGIC, "labels": LABELS_MAGIC}.get(kind)
    if expected is not None and magic in (IMAGES_MAGIC, LABELS_MAGIC) and magic != expected:
        other = "labels" if kind == "images" else "images"
        article = "an" if other == "images" else "a"
        raise DatasetError(f"{path} holds {other} (IDX magic number {magic}), not {kind} ({expected}): {article} "
                           f"{other} file saved under the {kind} file's name? Put the Fashion-MNIST {kind} file there")
    if magic == IMAGES_MAGIC:
        rows, cols = int.from_bytes(raw[8:12], "big"), int.from_bytes(raw[12:16], "big")
        shape, offset = (count, rows, cols), 16
    elif magic == LABELS_MAGIC:
        shape, offset = (count,), 8
    else:
        raise DatasetError(f"{path}: wrong magic number {magic} (expected 2051 for images or 2049 for labels). "
                           f"{_fix(path)}")
    if count != expected_count:
        raise DatasetError(f"{path}: holds {count} items, Fashion-MNIST has {expected_count} in this split. "
                           f"{_fix(path)}")
    size = int(np.prod(shape))
    if len(raw) != offset + size:
        raise DatasetError(f"{path}: {len(raw) - offset} bytes of data, {size} expected for shape {shape} "
                           f"(truncated or padded). {_fix(path)}")
    return np.frombuffer(raw, dtype=np.uint8, count=size, offset=offset).reshape(shape)


def _download(name, folder):
    """Fetch `name`.gz into `folder`, check its decompressed SHA-256, then rename it into place."""
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, name + ".gz")
    fd, tmp = tempfile.mkstemp(prefix=".download-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(URL + name + ".gz", timeout=60) as response:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        with gzip.open(tmp, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if digest != SHA256[name]:
            raise DatasetError(f"downloaded {name}.gz does not match the official contents (SHA-256 {digest}); "
                               "try again later or install dataset-fashion-mnist")
        os.replace(tmp, target)  # the cache never holds half a file
        return target
    except (OSError, EOFError) as exc:
        raise DatasetError(f"could not download {URL}{name}.gz ({exc}). Without a network, install Debian's "
                           "package dataset-fashion-mnist or set MINIVGG_DATA to a folder with the four files"
                           ) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _in_named_dir(split, folder, how):
    """The split's two files in the folder the user named; an error naming the folder if it lacks them."""
    where = f"{how}{folder}" if how.endswith("=") else f"{how} {folder}"
    if not os.path.isdir(folder):
        what = "is a file, not a folder" if os.path.exists(folder) else "does not exist"
        raise DatasetError(f"{where} {what}: name the folder that holds the Fashion-MNIST files, or name none "
                           f"to use {ELSEWHERE}")
    paths = [_find(name, [folder]) for name in FILES[split]]
    missing = [f"{name}(.gz)" for name, path in zip(FILES[split], paths) if path is None]
    if missing:
        raise DatasetError(f"{where} has no {' and no '.join(missing)} (the {split} split): put the Fashion-MNIST "
                           f"files there, gzipped or not, or name no folder to use {ELSEWHERE}")
    return paths


def _found_or_downloaded(name, download):
    dirs = search_dirs()
    path = _find(name, dirs)
    if path is None:
        if not download:
            raise DatasetError(f"{name}(.gz) not found in {', '.join(dirs)}. Install dataset-fashion-mnist "
                               "or set MINIVGG_DATA.")
        path = _download(name, cache_dir())
    return path


def _parse_split(split, paths):
    """(images, labels) from the split's two files, checked against each other: not swapped, same count."""
    raws = [_read_bytes(path) for path in paths]
    if [_magic(raw) for raw in raws] == [LABELS_MAGIC, IMAGES_MAGIC]:
        raise DatasetError(f"{paths[0]} holds the labels and {paths[1]} the images: the two files are swapped; "
                           "swap their names back")
    counts = [int.from_bytes(raw[4:8], "big") for raw in raws]
    if counts[0] != counts[1] and [_magic(raw) for raw in raws] == [IMAGES_MAGIC, LABELS_MAGIC]:
        odd = paths[1] if counts[0] == COUNTS[split] else paths[0]
        raise DatasetError(f"{paths[0]} holds {counts[0]} items but {paths[1]} holds {counts[1]}: the images and "
                           f"labels are not a pair; {odd} is the odd one. {_fix(odd)}")
    parsed = (parse_idx(raws[0], paths[0], COUNTS[split], kind="images"),
              parse_idx(raws[1], paths[1], COUNTS[split], kind="labels"))
    for name, path, raw in zip(FILES[split], paths, raws):
        _check_contents(name, path, raw)
    return parsed


def _verified_record():
    return os.path.join(cache_dir(), "verified.json")


def _stamp(path):
    """What identifies a file's version without reading it: where it is, its size and its mtime."""
    info = os.stat(path)
    return [os.path.realpath(path), info.st_size, info.st_mtime_ns]


def _check_contents(name, path, raw):
    """The file's decompressed SHA-256 against Fashion-MNIST's own: a file edited in place (labels changed, an
    image painted over) is refused. A file checked once is recorded by its size and mtime in the cache folder,
    and not hashed again until either changes."""
    stamp = _stamp(path)
    try:
        with open(_verified_record()) as f:
            verified = json.load(f)
    except (OSError, ValueError):
        verified = {}
    if not isinstance(verified, dict):
        verified = {}
    if verified.get(name) and stamp in verified[name]:
        return
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHA256[name]:
        raise DatasetError(f"{path}: its contents are not Fashion-MNIST's (SHA-256 {digest[:16]}..., expected "
                           f"{SHA256[name][:16]}...): the file was changed. {_fix(path)}")
    verified[name] = [entry for entry in verified.get(name, []) if entry[0] != stamp[0]][-7:] + [stamp]
    try:
        os.makedirs(cache_dir(), exist_ok=True)
        write_text(_verified_record(), json.dumps(verified))
    except OSError:
        pass  # a read-only home: the files are hashed again next time, which is all it costs


def load_fashion_mnist(split="train", root=None, download=True):
    """(images uint8 (N, 28, 28), labels uint8 (N,)) for split 'train' (60,000) or 'test' (10,000). A folder
    the user named (`root`, else $MINIVGG_DATA) must hold the files; only with none named are the cache,
    Debian's copy and a download (when `download`) tried."""
    if split not in FILES:
        raise ValueError(f"load_fashion_mnist: split must be 'train' or 'test', got {split!r}")
    named = _named_dir(root)
    if named:
        paths = _in_named_dir(split, *named)
    else:
        paths = [_found_or_downloaded(name, download) for name in FILES[split]]
    return _parse_split(split, paths)


def load_data_fashion_mnist(batch_size, resize=None, device="cpu", root=None, seed=0, train_limit=None, **kwargs):
    """D2L's helper: (train_loader, test_loader). `train_limit` keeps the first N training images."""
    train_x, train_y = load_fashion_mnist("train", root)
    if train_limit:
        train_x, train_y = train_x[:train_limit], train_y[:train_limit]
    test = load_fashion_mnist("test", root)
    train = DataLoader((train_x, train_y), batch_size, shuffle=True, device=device, resize=resize, seed=seed,
                       **kwargs)
    kwargs.pop("flip", None)
    return train, DataLoader(test, batch_size, shuffle=False, device=device, resize=resize, seed=seed, **kwargs)
