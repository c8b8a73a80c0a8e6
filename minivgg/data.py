"""Fashion-MNIST: find or download the IDX files, check them, and batch them onto a device; your own images
in one sub-folder per class: `ImageFolder` (PNG and JPEG, through Pillow) and a seeded `split`.

Where: the folder the user names (`root`, else $MINIVGG_DATA), which must hold the files; with none named,
~/.cache/minivgg/fashion-mnist, Debian's /usr/share/datasets/fashion-mnist (package dataset-fashion-mnist),
failing those a download of the official files into the cache. Files may be gzipped or not. Checks use the decompressed bytes, because Debian
re-compressed the .gz files (their MD5 differs from the upstream README's, the contents do not).
"""
import gzip
import hashlib
import os
import tempfile
import urllib.request
import warnings
import zlib

import numpy as np

from . import backend
from .autograd import Tensor
from .generators import AUGMENT_STREAM, FLIP_STREAM, stream_rng
from .nn import _checks

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
    return (parse_idx(raws[0], paths[0], COUNTS[split], kind="images"),
            parse_idx(raws[1], paths[1], COUNTS[split], kind="labels"))


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


# ---------------------------------------------------------------------------------------------------
# Batches on a device
# ---------------------------------------------------------------------------------------------------
def bilinear_matrix(in_size, out_size):
    """(out_size, in_size) float32 matrix of bilinear weights (half-pixel centres, PyTorch's
    align_corners=False): resizing an image is then two matrix products, M_h @ img @ M_w^T."""
    scale = in_size / out_size
    src = np.maximum((np.arange(out_size) + 0.5) * scale - 0.5, 0.0)
    low = np.minimum(np.floor(src).astype(int), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    frac = (src - low).astype(np.float32)
    m = np.zeros((out_size, in_size), dtype=np.float32)
    m[np.arange(out_size), low] += 1 - frac
    m[np.arange(out_size), high] += frac
    return m


def resize_bilinear(images, size):
    """images (B, C, H, W) float array -> (B, C, size, size), or (B, C, out_h, out_w) for a pair `size`,
    on the images' device."""
    out_h, out_w = (size, size) if np.ndim(size) == 0 else size
    xp = backend.get_array_module(images)
    *lead, h, w = images.shape
    mh = xp.asarray(bilinear_matrix(h, out_h))
    mw = xp.asarray(bilinear_matrix(w, out_w))
    # Two large products rather than one small product per image: rows first, then (transposed) columns.
    rows = (images.reshape(-1, w) @ mw.T).reshape(*lead, h, out_w)
    out = xp.swapaxes(rows, -1, -2).reshape(-1, h) @ mh.T
    return xp.swapaxes(out.reshape(*lead, out_w, out_h), -1, -2)


class DataLoader:
    """Batches of (images, labels) Tensors on `device`; images float32 in [0, 1], shape (B, C, R, R).

    `dataset` is a pair (uint8 images, labels (N,)): images (N, H, W) as from `load_fashion_mnist` (C = 1)
    or (N, C, H, W) as from `ImageFolder`. Each batch
    crosses to the device as uint8 and is converted, resized (`resize=R`, bilinear), normalized
    (`normalize=(mean, std)`) and flipped (`flip=True`: random horizontal flips) there, batch by
    batch. The shuffling order of epoch e depends only on (seed, e), so a resumed run sees the same
    batches as an uninterrupted one. `augment` (an augment.Augment) transforms each batch after the resize,
    with draws from (seed, e, batch index): random crops, scale jittering, colour shifts, mean subtraction.
    """

    def __init__(self, dataset, batch_size, shuffle=False, drop_last=False, device="cpu", seed=0, resize=None,
                 normalize=None, flip=False, limit_batches=None, augment=None):
        images, labels = dataset
        if len(images) != len(labels):
            raise ValueError(f"DataLoader: {len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, np.asarray(labels).astype(np.int64)
        self.batch_size = _checks.int_at_least("DataLoader", "batch_size", batch_size)
        self.shuffle, self.drop_last = shuffle, drop_last
        self.device = backend.canonical_device(device)
        self.seed, self.resize, self.normalize, self.flip = seed, resize, normalize, flip
        self.limit_batches, self.augment = limit_batches, augment
        self.epoch = 0

    def __len__(self):
        n = len(self.images)
        batches = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return min(batches, self.limit_batches) if self.limit_batches else batches

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def _order(self):
        if not self.shuffle:
            return np.arange(len(self.images))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.images))

    def __iter__(self):
        order = self._order()
        flips = stream_rng(self.seed, self.epoch, FLIP_STREAM).random(len(order)) < 0.5 if self.flip else None
        for b in range(len(self)):
            index = np.sort(order[b * self.batch_size:(b + 1) * self.batch_size])  # sorted: faster gather
            with backend.use_device(self.device):  # the conversion's kernels run where the batch is
                images = self._to_device_float(self.images[index])
                if self.augment is not None:  # its own stream of draws, seeded like the order and flips
                    images = self.augment(images, stream_rng(self.seed, self.epoch, AUGMENT_STREAM, b))
                if flips is not None:
                    images = self._flip(images, flips[b * self.batch_size:(b + 1) * self.batch_size])
                labels = backend.to_device(self.labels[index], self.device)
            yield Tensor(images), Tensor(labels)
        self.epoch += 1

    def _to_device_float(self, batch):
        x = backend.to_device(batch, self.device)  # uint8 over the bus: 4x less than float32
        xp = backend.get_array_module(x)
        x = x.astype(np.float32) * np.float32(1 / 255)
        if x.ndim == 3:  # (B, H, W): one channel
            x = x[:, None]
        if self.resize and x.shape[-2:] != (self.resize, self.resize):
            x = resize_bilinear(x, self.resize)
        if self.normalize:
            mean, std = self.normalize
            x = (x - np.float32(mean)) * np.float32(1 / std)
        return xp.ascontiguousarray(x)

    def _flip(self, images, flags):
        xp = backend.get_array_module(images)
        flags = backend.to_device(flags, self.device)
        return xp.where(flags[:, None, None, None], images[..., ::-1], images)


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


# ---------------------------------------------------------------------------------------------------
# Your own images: one sub-folder per class
# ---------------------------------------------------------------------------------------------------
IMAGE_FORMATS = ("PNG", "JPEG")
PILLOW_MISSING = ('ImageFolder decodes PNG and JPEG files with Pillow, which is not installed: '
                  'pip install -e ".[images]" (or pip install Pillow)')
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def _pillow():
    """PIL.Image, or an ImportError naming the optional extra that brings it."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(PILLOW_MISSING) from None
    return Image


def class_folders(root):
    """The sorted names of the sub-folders of `root` (one per class; hidden ones left out), as torchvision's
    ImageFolder orders them: class index i is the i-th name."""
    return sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))


def _decode(Image, path, size):
    """The image at `path` as a uint8 array, (H, W) if grey, (H, W, 3) if colour, resized to size x size
    (bilinear) when `size` is given; None, with a warning naming the file, if it is not a readable PNG or JPEG."""
    try:
        with Image.open(path) as picture:
            if picture.format not in IMAGE_FORMATS:
                warnings.warn(f"ImageFolder: skipped {path}: a {picture.format} image; only PNG and JPEG are read",
                              stacklevel=3)
                return None
            picture.load()  # decodes now, inside the try: a truncated file fails here
            if picture.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit or float grey: scale to 8 bits
                wide = np.asarray(picture, dtype=np.float64)
                top = 65535.0 if picture.mode != "F" else max(float(wide.max()), 1.0)
                picture = Image.fromarray(np.clip(np.rint(wide * (255 / top)), 0, 255).astype(np.uint8))
            picture = picture.convert("L" if picture.mode in GREY_MODES else "RGB")
            if size:
                picture = picture.resize((size, size), Image.BILINEAR)
            return np.asarray(picture, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        # Pillow reports a file that is no image, or a damaged one, with any of these.
        warnings.warn(f"ImageFolder: skipped {path}: not a readable image ({exc})", stacklevel=3)
        return None


class ImageFolder:
    """Images sorted into one sub-folder per class, as torchvision's ImageFolder reads them, held in memory:
    `.images` uint8 (N, C, H, W), `.labels` int64 (N,), `.classes` (the sub-folders' names, sorted: label i is
    `classes[i]`), `.class_to_idx`, `.samples` [(path, label)].

    PNG and JPEG files are decoded with Pillow (`pip install -e ".[images]"`). C is 1 if every image is grey,
    else 3: the grey ones are then converted to RGB too (an alpha channel is dropped). With `size`, every
    image is resized to size x size (bilinear); without it they must all have the first one's size. A file
    that is not a readable PNG or JPEG is skipped with a warning naming it.

        folder = ImageFolder("flowers", size=64)
        loader = DataLoader((folder.images, folder.labels), 32, shuffle=True)
    """

    def __init__(self, root, size=None):
        Image = _pillow()
        if not os.path.isdir(root):
            raise DatasetError(f"ImageFolder: no folder at {root}")
        self.root, self.size = root, size
        self.classes = class_folders(root)
        if not self.classes:
            raise DatasetError(f"ImageFolder: {root} has no class sub-folders (put each class's images in a "
                               "sub-folder named after it)")
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        pictures, self.samples, first = [], [], None
        for label, name in enumerate(self.classes):
            folder = os.path.join(root, name)
            for file in sorted(os.listdir(folder)):
                path = os.path.join(folder, file)
                if file.startswith(".") or not os.path.isfile(path):
                    continue
                picture = _decode(Image, path, size)
                if picture is None:
                    continue
                if first is None:
                    first = (path, picture.shape[:2])
                elif picture.shape[:2] != first[1]:
                    raise DatasetError(
                        f"ImageFolder: {path} is {picture.shape[1]}x{picture.shape[0]} but {first[0]} is "
                        f"{first[1][1]}x{first[1][0]}: images of different sizes need size=S (resized to SxS)")
                pictures.append(picture)
                self.samples.append((path, label))
        empty = sorted(set(self.classes) - {self.classes[label] for _, label in self.samples})
        if empty:
            raise DatasetError(f"ImageFolder: no readable PNG or JPEG image in {', '.join(empty)} (under {root})")
        colour = any(p.ndim == 3 for p in pictures)
        # Grey to RGB repeats the grey value in each channel, as Pillow's convert("RGB") does.
        self.images = np.stack([(np.repeat(p[..., None], 3, axis=2) if p.ndim == 2 else p) if colour
                                else p[..., None] for p in pictures]).transpose(0, 3, 1, 2).copy()
        self.labels = np.array([label for _, label in self.samples], dtype=np.int64)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], self.labels[index]

    def __repr__(self):
        n, c, h, w = self.images.shape
        return f"ImageFolder({self.root!r}: {n} images of {c}x{h}x{w}, {len(self.classes)} classes)"


def split(dataset, fraction, seed=0):
    """((train images, labels), (held-out images, labels)) from a pair or an ImageFolder, as Keras'
    validation_split: the examples are shuffled with `seed`, and the last int(fraction * N) of them (at
    least one, and at most N - 1) are held out. The same (dataset, fraction, seed) give the same split."""
    _checks.number_between("split", "fraction", fraction, 0, 1, closed=False)
    images, labels = (dataset.images, dataset.labels) if isinstance(dataset, ImageFolder) else dataset
    n = len(labels)
    if n < 2:
        raise DatasetError(f"split: {n} example(s) cannot be split into a training and a held-out part")
    held = min(max(int(fraction * n), 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    keep, out = np.sort(order[:n - held]), np.sort(order[n - held:])
    return (images[keep], labels[keep]), (images[out], labels[out])
