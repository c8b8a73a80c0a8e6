"""Batches on a device: `DataLoader` (uint8 images in, float32 batches out, resized there) and the
bilinear resize it uses."""
import numpy as np

from .. import backend
from ..autograd import Tensor
from ..generators import AUGMENT_STREAM, FLIP_STREAM, stream_rng
from ..nn import _checks


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


def _checked_images(images):
    """Integer images (0-255, as uint8 stores them) or float images (already in [0, 1]); any other kind is
    refused, since its scale is unknown."""
    dtype = getattr(images, "dtype", None)
    if dtype is None or not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise TypeError(f"DataLoader: images must be a uint8 array (0-255) or a float array in [0, 1], got "
                        f"{dtype if dtype is not None else type(images).__name__}")
    return images


def _checked_labels(labels):
    """The labels as int64 class indices; floats only if they are whole numbers (never truncated)."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"DataLoader: labels must be one class index per image, shape (N,), got {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.bool_)):
        whole = np.issubdtype(labels.dtype, np.floating) and np.all(np.isfinite(labels) & (labels == np.round(labels)))
        if not whole:
            raise ValueError(f"DataLoader: labels must be class indices (whole numbers), got {labels.dtype} "
                             f"values such as {labels.flat[0] if labels.size else '(none)'}")
    return labels.astype(np.int64)


def _checked_normalize(normalize):
    """(mean, std), two numbers, std > 0; or None."""
    if normalize is None:
        return None
    if not (isinstance(normalize, (tuple, list)) and len(normalize) == 2):
        raise ValueError(f"DataLoader: normalize must be a pair (mean, std), got {normalize!r}")
    _checks.number_between("DataLoader", "normalize's mean", normalize[0])
    _checks.number_between("DataLoader", "normalize's std", normalize[1], 0, closed=False)
    return normalize


class DataLoader:
    """Batches of (images, labels) Tensors on `device`; images float32 in [0, 1], shape (B, C, R, R).

    `dataset` is a pair (images, integer labels (N,)): images (N, H, W) as from `load_fashion_mnist` (C = 1)
    or (N, C, H, W) as from `ImageFolder`, uint8 (divided by 255, as torchvision's ToTensor does) or floats
    already in [0, 1] (taken as they are). Each batch crosses to the device as it is stored (uint8: 4x less
    than float32) and is converted, resized (`resize=R`, bilinear), normalized (`normalize=(mean, std)`) and
    flipped (`flip=True`: random horizontal flips) there, batch by batch. The shuffling order of epoch e
    depends only on (seed, e), so a resumed run sees the same
    batches as an uninterrupted one. `augment` (an augment.Augment) transforms each batch after the resize,
    with draws from (seed, e, batch index): random crops, scale jittering, colour shifts, mean subtraction.
    """

    def __init__(self, dataset, batch_size, shuffle=False, drop_last=False, device="cpu", seed=0, resize=None,
                 normalize=None, flip=False, limit_batches=None, augment=None):
        images, labels = dataset
        if len(images) != len(labels):
            raise ValueError(f"DataLoader: {len(images)} images but {len(labels)} labels")
        self.images, self.labels = _checked_images(images), _checked_labels(labels)
        self.batch_size = _checks.int_at_least("DataLoader", "batch_size", batch_size)
        self.shuffle, self.drop_last = shuffle, drop_last
        self.device = backend.canonical_device(device)
        self.seed = _checks.int_at_least("DataLoader", "seed", seed, minimum=0)
        self.resize = _checks.int_at_least("DataLoader", "resize", resize, none_ok=True)
        self.normalize, self.flip = _checked_normalize(normalize), flip
        self.limit_batches = _checks.int_at_least("DataLoader", "limit_batches", limit_batches, none_ok=True)
        self.augment = augment
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
        if np.issubdtype(x.dtype, np.integer):  # 0-255 to [0, 1], as torchvision's ToTensor; floats as given
            x = x.astype(np.float32) * np.float32(1 / 255)
        else:
            x = x.astype(np.float32)
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
