"""Test-time evaluation as in Simonyan & Zisserman (2014), section 3.2, next to the plain forward pass.

The paper rescales each test image to a test scale Q and then either
  * applies the fully-convolutional net to the whole image and averages its class-score map spatially
    ("dense" evaluation, `dense_scores`), or
  * scores crops of the training size taken on a regular grid, each with its horizontal flip
    ("multi-crop" evaluation, `multi_crop_scores`),
and averages the soft-max class posteriors over flips, crops and several scales Q (`multi_scale_scores`).

Every function takes a trained net and a batch of images (an array or Tensor (N, C, H, W), float32 as the
DataLoader yields them) and returns soft-max scores (N, classes) as a float32 array on the net's device;
`predict` and `evaluate` run them over a loader, batch by batch. All of it runs in evaluation mode without a
graph, with array functions NumPy and CuPy share, so the same code evaluates on the CPU and on the GPU.
"""
import numpy as np

from . import backend, models
from . import functional as F
from .autograd import Tensor
from .data import resize_bilinear
from .nn.utils import device_of, evaluating

MODES = ("plain", "dense", "multi-crop")
# The paper's crops of 224 come from images rescaled to 256: multi-crop keeps that ratio when no scale is given.
CROP_RATIO = 256 / 224


def default_crop_scale(crop):
    """The test scale Q multi-crop uses when none is given: the paper's ratio of 256 to 224 crops (37 for 32),
    so that the grid's crops differ (at Q = crop every position is the same crop)."""
    return int(round(crop * CROP_RATIO))


def crop_offsets(size, crop, grid):
    """The distinct top (or left) edges of `grid` crops of side `crop` spread evenly over `size` pixels: the
    first at 0, the last at size - crop, the others between at equal (floored) steps; grid 1 is the centre."""
    if crop > size:
        raise ValueError(f"crop_offsets: a crop of {crop} does not fit in {size} pixels (use a scale >= {crop})")
    if grid < 1:
        raise ValueError(f"crop_offsets: grid must be >= 1, got {grid}")
    room = size - crop
    if grid == 1:
        return [room // 2]
    return sorted({i * room // (grid - 1) for i in range(grid)})  # a set: at a small room positions coincide


def _as_array(net, images):
    """The images as a float32 (N, C, H, W) array on the net's device."""
    x = images.data if isinstance(images, Tensor) else images
    x = backend.to_device(x, device_of(net))
    if x.ndim != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(x.shape)}")
    return x if x.dtype == np.float32 else x.astype(np.float32)


def _rescale(x, size):
    """The images resized (bilinearly, on their device) to size x size; unchanged if already that size."""
    return x if x.shape[-2:] == (size, size) else resize_bilinear(x, size)


def _flipped(x):
    """Horizontally flipped (the width reversed), contiguous for the convolutions."""
    return backend.get_array_module(x).ascontiguousarray(x[..., ::-1])


def _softmax(net, x):
    """Soft-max of the net's logits on the array x, as an array."""
    xp = backend.get_array_module(x)
    return F.softmax(net(Tensor(xp.ascontiguousarray(x))), dim=1).data


def _mean(scores):
    total = scores[0]
    for s in scores[1:]:
        total = total + s
    return total * np.float32(1 / len(scores))


def _centre(x, crop):
    top = crop_offsets(x.shape[-1], crop, 1)[0]
    return x[:, :, top:top + crop, top:top + crop]


def plain_scores(net, images, size=None, scale=None):
    """Soft-max scores of one forward pass: the images rescaled to `scale` (default `size`) and, if that is
    larger, their centre crop of `size` (the training size; default: the images' size), as a run's test
    accuracy is measured during training."""
    with evaluating(net):
        x = _as_array(net, images)
        size = x.shape[-1] if size is None else size
        return _softmax(net, _centre(_rescale(x, size if scale is None else scale), size))


def multi_crop_scores(net, images, crop, scale=None, grid=3, flips=True):
    """The paper's multi-crop evaluation at one test scale: the images rescaled to `scale` (Q; default
    `default_crop_scale(crop)`), crops of side `crop` (the training size) taken at grid x grid positions
    (`crop_offsets`: corners, centre and between), each crop and, with `flips`, its horizontal flip scored,
    the soft-max scores averaged."""
    scale = default_crop_scale(crop) if scale is None else scale
    offsets = crop_offsets(scale, crop, grid)
    with evaluating(net):
        x = _rescale(_as_array(net, images), scale)
        scores = []
        for top in offsets:
            for left in offsets:
                patch = x[:, :, top:top + crop, left:left + crop]
                scores.append(_softmax(net, patch))
                if flips:
                    scores.append(_softmax(net, _flipped(patch)))
        return _mean(scores)


def dense_scores(net, images, scale=None, flips=False, fcn=None):
    """The paper's dense evaluation at one test scale: the images rescaled to `scale` (Q; default: as they
    are), the fully-convolutional net (`models.to_fully_convolutional`; pass `fcn` to convert only once)
    applied to the whole image, its class-score map averaged spatially, then soft-max; with `flips` averaged
    with the flipped image's scores. At the training size without flips it equals `plain_scores`."""
    fcn = models.to_fully_convolutional(net) if fcn is None else fcn
    with evaluating(net), evaluating(fcn):
        x = _as_array(net, images)
        x = x if scale is None else _rescale(x, scale)
        scores = [_softmax(fcn, x)]
        if flips:
            scores.append(_softmax(fcn, _flipped(x)))
        return _mean(scores)


def multi_scale_scores(net, images, scales, mode="dense", crop=None, grid=3, flips=True, fcn=None):
    """The soft-max scores of `mode` ('dense' or 'multi-crop') averaged over the test scales `scales` (the
    paper's multi-scale evaluation). `crop` is the training size, which multi-crop needs."""
    if not scales:
        raise ValueError("multi_scale_scores: give at least one scale")
    if mode == "dense":
        fcn = models.to_fully_convolutional(net) if fcn is None else fcn
        return _mean([dense_scores(net, images, q, flips=flips, fcn=fcn) for q in scales])
    if mode == "multi-crop":
        if crop is None:
            raise ValueError("multi_scale_scores: multi-crop needs the crop size (the training size)")
        return _mean([multi_crop_scores(net, images, crop, q, grid=grid, flips=flips) for q in scales])
    raise ValueError(f"multi_scale_scores: mode must be 'dense' or 'multi-crop', got {mode!r}")


def class_scores(net, images, mode="plain", size=None, scales=None, grid=3, flips=True, fcn=None):
    """Soft-max scores (N, classes) of one batch by `mode`:
      'plain'       `plain_scores`: one pass on the images rescaled to the one scale in `scales` (default:
                    `size`, the training size; default: the images' size), centre-cropped to `size`;
      'dense'       `dense_scores` at each of `scales` (default: `size`), averaged;
      'multi-crop'  `multi_crop_scores` with crops of `size` at each of `scales` (default:
                    `default_crop_scale(size)`), averaged.
    `flips` (dense and multi-crop) also scores each horizontal flip; `grid` is multi-crop's grid side."""
    images = _as_array(net, images)  # once: the functions below then find it on the device
    size = images.shape[-1] if size is None else size
    if mode == "plain":
        if scales and len(scales) > 1:
            raise ValueError("class_scores: plain evaluation is one pass at one scale; several scales need "
                             "'dense' or 'multi-crop'")
        return plain_scores(net, images, size, scales[0] if scales else None)
    if mode == "dense":
        return multi_scale_scores(net, images, scales or [size], "dense", flips=flips, fcn=fcn)
    if mode == "multi-crop":
        return multi_scale_scores(net, images, scales or [default_crop_scale(size)], "multi-crop", crop=size,
                                  grid=grid, flips=flips)
    raise ValueError(f"class_scores: mode must be one of {', '.join(MODES)}, got {mode!r}")


def _scored_batches(net, loader, mode, **options):
    """(scores, labels array) per batch of the loader; the fully-convolutional net is built once."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "dense" and options.get("fcn") is None:
        options["fcn"] = models.to_fully_convolutional(net)
    for images, labels in loader:
        yield class_scores(net, images, mode, **options), labels.data


def predict(net, loader, mode="plain", size=None, scales=None, grid=3, flips=True):
    """(predicted labels, true labels) as NumPy arrays over the loader, by `mode` (see `class_scores`)."""
    preds, trues = [], []
    for scores, labels in _scored_batches(net, loader, mode, size=size, scales=scales, grid=grid, flips=flips):
        preds.append(backend.to_numpy(scores.argmax(axis=1)))
        trues.append(backend.to_numpy(labels))
    return np.concatenate(preds), np.concatenate(trues)


def evaluate(net, loader, mode="plain", size=None, scales=None, grid=3, flips=True):
    """Accuracy over the loader by `mode` ('plain', 'dense' or 'multi-crop'; see `class_scores`)."""
    correct, total = 0, 0
    for scores, labels in _scored_batches(net, loader, mode, size=size, scales=scales, grid=grid, flips=flips):
        correct += (scores.argmax(axis=1) == labels).sum()  # stays on the device until the end
        total += labels.shape[0]
    return float(correct) / max(total, 1)
