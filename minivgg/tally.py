"""The bookkeeping of a training epoch on its device, kept apart from the learning in `train_epoch`.

On a GPU, reading a number back to the host waits for all the work queued before it, so the running sums
stay on the device and are read together, at logging steps only. On the CPU a read costs nothing, so
there the sums are read (and the loss checked) after every step."""
import numpy as np

from . import backend, cuda
from .functional import check_label_range


class EpochTally:
    """Running loss, correct predictions and examples of one epoch, on `device`.

    `add` after every step; `due(step)` says whether to read now (every step on the CPU; on a GPU at the
    logging steps: every `log_every`-th and the last of `num_batches`); `read` copies the sums to the host
    in one transfer. On a GPU it also keeps the labels' smallest and largest values, checked at every read
    (the CPU's cross_entropy checks them at once, but CuPy wraps an out-of-range label around instead of
    failing), and each read notes the memory pool's high-water mark (cuda.memory_info)."""

    def __init__(self, device, num_batches, log_every):
        self.on_gpu = device != "cpu"
        self.xp = backend.array_module_for(device)
        self.num_batches, self.log_every = num_batches, log_every
        self.loss_sum, self.correct = self.xp.zeros((), dtype=np.float64), self.xp.zeros((), dtype=np.int64)
        self.label_low, self.label_high = self.xp.zeros((), dtype=np.int64), self.xp.zeros((), dtype=np.int64)
        self.seen, self.classes, self.batch_loss = 0, 2, self.xp.zeros((), dtype=np.float64)

    def add(self, loss, predicted, labels, classes):
        """Count a step: its loss (a scalar Tensor, the batch's mean), predicted and true labels (N,), and
        the number of classes the labels must lie below."""
        n = labels.shape[0]
        self.batch_loss, self.classes = loss.data, classes
        self.loss_sum += loss.data * n
        self.correct += (predicted == labels.data).sum()
        self.seen += n
        if self.on_gpu and n:
            self.label_low = self.xp.minimum(self.label_low, labels.data.min())
            self.label_high = self.xp.maximum(self.label_high, labels.data.max())

    def logging(self, step):
        return step % self.log_every == 0 or step == self.num_batches

    def due(self, step):
        return not self.on_gpu or self.logging(step)

    def read(self, where):
        """(mean loss, last batch's loss, accuracy) so far, as Python floats. On a GPU the labels seen so far
        are checked too: an out-of-range one raises cross_entropy's ValueError, naming `where`."""
        total_loss, batch_loss, correct, low, high = _read(
            self.xp, self.loss_sum, self.batch_loss, self.correct, self.label_low, self.label_high)
        if self.on_gpu:
            check_label_range(int(low), int(high), self.classes,
                              f"{where}; on a GPU the labels are checked when the loss is read, every "
                              f"{self.log_every} steps")
            cuda.memory_info()  # the pool's high-water mark: host counters, no wait
        seen = max(self.seen, 1)
        return total_loss / seen, batch_loss, correct / seen

    def totals(self):
        """(mean loss, accuracy, examples) of the epoch: one read."""
        total_loss, correct = _read(self.xp, self.loss_sum, self.correct)
        seen = max(self.seen, 1)
        return total_loss / seen, correct / seen, self.seen


def _read(xp, *values):
    """Device scalars as Python floats, copied to the host together: one synchronization on a GPU."""
    if xp is np:
        return [float(v) for v in values]
    return [float(v) for v in backend.to_numpy(xp.stack([v.astype(np.float64) for v in values]))]
