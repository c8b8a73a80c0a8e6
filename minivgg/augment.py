"""The training-time augmentation of Simonyan & Zisserman (2014), section 3.1, done on the device, batch by batch.

Each training image is rescaled so that its smallest side is S (the training scale: fixed, or drawn from
[S_min, S_max] for every batch: scale jittering), a crop of the network's input size is taken at a random
position, flipped at random (the DataLoader's `flip`), its intensity (one channel) or colour (three channels,
AlexNet's PCA shift) shifted at random, and the training set's per-channel mean subtracted. Evaluation
rescales to one scale Q and takes the centre crop, with nothing random.

The transforms are small functions on xp arrays (NumPy or CuPy) of shape (B, C, H, W); `Augment` chains them
and is what a DataLoader calls on every batch (`DataLoader(..., augment=Augment(...))`). The random numbers
are drawn on the host with NumPy from a generator the loader derives from (seed, epoch, batch index): they
are few (one scale, two positions and C offsets per image) and only they cross the bus, so the images stay
on the device and a resumed run draws what an uninterrupted one drew.
"""
import numpy as np

from . import backend
from .data import resize_bilinear


def rescale(images, scale):
    """images (B, C, H, W) float -> (B, C, H', W') with min(H', W') = scale and the aspect ratio kept
    (bilinear, by data.resize_bilinear), on the images' device."""
    h, w = images.shape[-2:]
    out_h, out_w = (scale, round(w * scale / h)) if h <= w else (round(h * scale / w), scale)
    if (out_h, out_w) == (h, w):
        return images
    return resize_bilinear(images, (out_h, out_w))


def crop(images, size, tops, lefts):
    """images (B, C, H, W) -> (B, C, size, size): image i cut at rows tops[i]:tops[i]+size and columns
    lefts[i]:lefts[i]+size. `tops`, `lefts`: (B,) integer NumPy arrays (positions drawn on the host)."""
    xp = backend.get_array_module(images)
    device = backend.device_of(images)
    b, c = images.shape[:2]
    span = np.arange(size)
    # One gather with per-image row and column indices: only these small index arrays cross the bus.
    rows = backend.to_device((np.asarray(tops)[:, None] + span)[:, None, :, None], device)
    cols = backend.to_device((np.asarray(lefts)[:, None] + span)[:, None, None, :], device)
    batch = xp.arange(b).reshape(b, 1, 1, 1)
    channel = xp.arange(c).reshape(1, c, 1, 1)
    return images[batch, channel, rows, cols]


def center_crop(images, size):
    """images (B, C, H, W) -> (B, C, size, size), the centre of each image (a view, no copy)."""
    h, w = images.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top:top + size, left:left + size]


def shift(images, offsets):
    """images (B, C, H, W) + offsets (B, C) (host NumPy), one offset per image and channel, on the device."""
    offsets = backend.to_device(np.asarray(offsets, dtype=np.float32), backend.device_of(images))
    return images + offsets[:, :, None, None]


def subtract_mean(images, mean, std=None):
    """images (B, C, H, W) minus the per-channel `mean` (C,) (host numbers), divided by the per-channel `std`
    (C,) when given (ImageNet weights expect both), on the images' device."""
    device = backend.device_of(images)
    images = images - backend.to_device(np.asarray(mean, dtype=np.float32), device)[None, :, None, None]
    if std is not None:
        images = images / backend.to_device(np.asarray(std, dtype=np.float32), device)[None, :, None, None]
    return images


def colour_offsets(alphas, eigenvalues, eigenvectors):
    """AlexNet's PCA colour shift on the host: alphas (B, C) ~ N(0, sigma) -> offsets (B, C), the sum over
    principal axes p_j of alpha_j * sqrt(lambda_j) * p_j. With the axes' standard deviations sqrt(lambda)
    (AlexNet writes lambda), one channel gets an offset N(0, sigma * std), the intensity shift."""
    scaled = np.asarray(alphas, dtype=np.float64) * np.sqrt(np.maximum(eigenvalues, 0.0))
    return scaled @ np.asarray(eigenvectors, dtype=np.float64).T


def pixel_statistics(images, chunk=4096):
    """Per-channel mean (C,) and covariance (C, C) of the pixels, in [0, 1] units, of uint8 `images`
    (N, H, W) (one channel) or (N, C, H, W); computed once on the host, in chunks, in float64."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    c = images.shape[1]
    total, outer, count = np.zeros(c), np.zeros((c, c)), 0
    for start in range(0, len(images), chunk):
        pixels = np.moveaxis(images[start:start + chunk], 1, -1).reshape(-1, c).astype(np.float64) / 255
        total += pixels.sum(axis=0)
        outer += pixels.T @ pixels
        count += len(pixels)
    mean = total / max(count, 1)
    return mean, outer / max(count, 1) - np.outer(mean, mean)


class Augment:
    """The paper's transforms of one batch, called by the DataLoader as augment(images, rng) on images
    (B, C, H, W) float32 on the device, with rng a np.random.Generator derived from (seed, epoch, batch).

    crop: the output's side (None: no crop). scale: the training scale S (the smallest side after
    rescaling; None: keep the size), and the test scale Q of `evaluation()`. jitter: (S_min, S_max): S drawn
    for each batch, uniformly among the integers in between. shift: sigma of the per-image colour shift
    (0: none), with `covariance` (C, C) of the training pixels. mean: (C,) subtracted per channel (None: not);
    std: (C,) then divides each channel (None: not).
    train=False: no random draw: rescale to `scale`, centre crop, subtract the mean.
    """

    def __init__(self, crop=None, scale=None, jitter=None, shift=0.0, covariance=None, mean=None, train=True,
                 std=None):
        if jitter is not None and not 0 < jitter[0] <= jitter[1]:
            raise ValueError(f"Augment: jitter must be (S_min, S_max) with 0 < S_min <= S_max, got {jitter}")
        smallest = min(jitter) if jitter is not None else scale
        if crop is not None and smallest is not None and crop > smallest:
            raise ValueError(f"Augment: a crop of {crop} does not fit in an image rescaled to {smallest}")
        if shift and covariance is None:
            raise ValueError("Augment: a colour shift needs the training pixels' covariance")
        self.crop, self.scale, self.train = crop, scale, train
        self.jitter = tuple(int(s) for s in jitter) if jitter is not None else None
        if std is not None and mean is None:
            raise ValueError("Augment: std divides after the mean is subtracted: give mean too")
        self.shift, self.mean, self.std = float(shift or 0.0), mean, std
        self.covariance = np.asarray(covariance, dtype=np.float64) if covariance is not None else None
        if self.shift:
            self.eigenvalues, self.eigenvectors = np.linalg.eigh(self.covariance)

    def evaluation(self):
        """The same rescaling and mean, nothing random: rescale to `scale`, centre crop."""
        return Augment(self.crop, self.scale, mean=self.mean, std=self.std, train=False)

    def __call__(self, images, rng):
        if not self.train:
            if self.scale:
                images = rescale(images, self.scale)
            if self.crop:
                images = center_crop(images, self.crop)
        else:
            scale = int(rng.integers(self.jitter[0], self.jitter[1] + 1)) if self.jitter else self.scale
            if scale:
                images = rescale(images, scale)
            if self.crop:
                b, _, h, w = images.shape
                images = crop(images, self.crop, rng.integers(0, h - self.crop + 1, b),
                              rng.integers(0, w - self.crop + 1, b))
            if self.shift:
                alphas = rng.normal(0.0, self.shift, images.shape[:2])
                images = shift(images, colour_offsets(alphas, self.eigenvalues, self.eigenvectors))
        if self.mean is not None:
            images = subtract_mean(images, self.mean, self.std)
        xp = backend.get_array_module(images)
        return xp.ascontiguousarray(images)

    def __repr__(self):
        parts = [f"crop={self.crop}", f"scale={self.scale}"]
        if self.train:
            parts += [f"jitter={self.jitter}", f"shift={self.shift}"]
        return f"Augment({', '.join(parts)}, mean={'yes' if self.mean is not None else 'no'}, train={self.train})"
