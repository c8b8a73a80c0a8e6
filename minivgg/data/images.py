"""Your own images, one sub-folder per class: `ImageFolder` (PNG and JPEG, through Pillow) and a seeded
`split` into training and held-out examples."""
import os
import warnings

import numpy as np

from ..nn import _checks
from ..runs import LOCK, RUN_FILES
from .fashion_mnist import DatasetError


IMAGE_FORMATS = ("PNG", "JPEG")
PILLOW_MISSING = ('ImageFolder decodes PNG and JPEG files with Pillow, which is not installed: '
                  'pip install -e ".[images]" (or pip install Pillow)')
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def require_pillow():
    """PIL.Image, or an ImportError naming the optional extra that brings it."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(PILLOW_MISSING) from None
    return Image


# the files that make a folder one of minivgg's run folders
RUN_MARKERS = (*RUN_FILES, LOCK)


def _is_run_folder(path):
    return any(os.path.exists(os.path.join(path, name)) for name in RUN_MARKERS)


def _holds_runs(path):
    """A run folder, or a folder of run folders (the default runs/): minivgg's output, not a class."""
    if _is_run_folder(path):
        return True
    entries = list(os.scandir(path))
    return bool(entries) and all(entry.is_dir() and _is_run_folder(entry.path) for entry in entries)


def class_folders(root):
    """The sorted names of the sub-folders of `root` (one per class; hidden ones and minivgg's run folders
    left out), as torchvision's ImageFolder orders them: class index i is the i-th name."""
    return sorted(entry.name for entry in os.scandir(root)
                  if entry.is_dir() and not entry.name.startswith(".") and not _holds_runs(entry.path))


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
        Image = require_pillow()
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
