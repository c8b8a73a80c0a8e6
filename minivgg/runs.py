"""A run's folder: checkpoint.npz (the resume point) and interrupted.npz, history.json and training.png,
each written to a temporary file and renamed, and what a checkpoint holds (`training_state`, `restore`)."""
import copy
import errno
import json
import os
from contextlib import contextmanager

import numpy as np

from . import backend
from .autograd import Tensor
from .files import write_text
from .plotting import plot_history, pyplot
from .serialization import DAMAGED, CheckpointError, read_json, save

CHECKPOINT = "checkpoint.npz"
INTERRUPTED = "interrupted.npz"
RUN_FILES = (CHECKPOINT, INTERRUPTED, "history.json")  # a folder holding any of these holds a run
LOCK = ".lock"  # held by the process training in the folder (cli.folders.RunClaim)


def _write_json(obj, path):
    write_text(path, json.dumps(obj, indent=1))


def training_state(net, optimizer, scheduler, epoch, history, config):
    """Everything an exact resume needs after `epoch` finished epochs: weights, optimizer (momentum/moments)
    and scheduler state, the history and the run's config; also the CPU generator's state, for draws made
    outside fit (fit's own, dropout's, come from (seed, epoch, step), and the loader's order from (seed,
    epoch), so they need no state)."""
    return {
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "rng": backend.generator_state(),
        "epoch": epoch,
        "history": history,
        "config": config or {},
    }


def restore(run_dir, net, optimizer, scheduler=None, device="cpu"):
    """Load a run's checkpoint into net/optimizer/scheduler and the random state. Returns
    (epochs done, history)."""
    from .checkpoint import load_checkpoint

    path = os.path.join(run_dir, CHECKPOINT)
    state = load_checkpoint(path, device=device, needs_config=False)
    net.load_state_dict(state["model"])
    try:  # an edited entry is named before anything trains on it
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler"):
            scheduler.load_state_dict(state["scheduler"])
        backend.set_generator_state(state["rng"])
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{path}: {exc} (was the file edited?); {DAMAGED}") from None
    return int(state["epoch"]), state["history"]


class RunFolder:
    """The files of a run. After every epoch: checkpoint.npz (the resume point), history.json, training.png
    and, with a gradient monitor, gradients.png; on Ctrl-C during an epoch's steps: interrupted.npz, which
    leaves the last epoch's checkpoint intact. The checkpoint, history.json and training.png are written to a
    temporary file and renamed, so a crash never leaves half of one behind. The folder is created with the
    first file written into it, so a run that fails before then leaves no empty folder behind. A file that
    cannot be written (permissions, a full disk) is an OSError naming it."""

    def __init__(self, path):
        self.path = path
        # matplotlib imported now, not at the first plot: a Ctrl-C there would leave it half imported
        pyplot()

    @property
    def checkpoint(self):
        return os.path.join(self.path, CHECKPOINT)

    def save_epoch(self, state, monitor=None):
        """Write the end-of-epoch files from `state` (a `training_state`)."""
        self.save_state(state)
        self.draw(state, monitor)

    def save_state(self, state):
        """checkpoint.npz and history.json; an interrupted.npz of an earlier epoch is removed, since the
        checkpoint has gone past it."""
        with _writing(self.checkpoint, self.path):
            os.makedirs(self.path, exist_ok=True)
            save(state, self.checkpoint)
        history = os.path.join(self.path, "history.json")
        with _writing(history, self.path):
            _write_json(state["history"], history)
        interrupted = os.path.join(self.path, INTERRUPTED)
        done = saved_epochs(interrupted) if os.path.exists(interrupted) else None
        if done is not None and done < state["epoch"]:  # one that cannot be read is left alone
            os.remove(interrupted)

    def draw(self, state, monitor=None):
        """training.png and, with a gradient monitor, gradients.png."""
        with _writing(os.path.join(self.path, "training.png"), self.path):
            plot_history(state["history"], os.path.join(self.path, "training.png"))
            if monitor is not None:
                monitor.plot(os.path.join(self.path, "gradients.png"))

    def save_interrupted(self, state):
        """Write interrupted.npz (the weights at the moment of Ctrl-C); returns its path."""
        path = os.path.join(self.path, INTERRUPTED)
        with _writing(path, self.path):
            os.makedirs(self.path, exist_ok=True)
            save(state, path)
        return path


def saved_epochs(path):
    """The finished epochs a saved state (a checkpoint, interrupted.npz) records; None when it cannot be read."""
    try:
        return int(read_json(path)["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


WRITE_ERRORS = {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                errno.EROFS: "a read-only file system", errno.ENOSPC: "disk full",
                errno.EFBIG: "file too large (disk full, or a file-size limit: ulimit -f)",
                errno.EDQUOT: "disk quota exceeded"}


@contextmanager
def _writing(path, folder):
    """An OSError while writing `path` as one line naming it and why; the file it replaces stays intact."""
    try:
        yield
    except OSError as exc:
        why = WRITE_ERRORS.get(exc.errno, exc.strerror or str(exc))
        kept = f"; {folder}/{CHECKPOINT} is unchanged" if os.path.exists(os.path.join(folder, CHECKPOINT)) else ""
        raise OSError(f"cannot write {path}: {why} ({exc.strerror or exc}){kept}") from None


def copied_state(obj):
    """A deep copy of a training state, its arrays on the host: what the weights were, kept in memory."""
    if isinstance(obj, dict):
        return {key: copied_state(value) for key, value in obj.items()}
    if isinstance(obj, Tensor):
        return np.array(backend.to_numpy(obj.data), copy=True)
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        return np.array(backend.to_numpy(obj), copy=True)
    return copy.deepcopy(obj)
