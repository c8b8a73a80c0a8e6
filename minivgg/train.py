"""The training loop: `fit` with a progress bar, D2L's per-epoch line and plot, history.json, atomic
checkpoints after every epoch and on Ctrl-C, exact resume, and a clear stop on a NaN/inf loss.

`fit` runs epochs of `train_epoch` (one `train_step` per batch, `check_finite_loss` on the running loss),
evaluates, and writes the run's files through a `RunFolder`."""
import json
import math
import os
import time

import numpy as np

from . import backend, cuda
from . import functional as F
from .nn.utils import clip_grad_norm_, device_of, evaluating
from .serialization import load, save
from .tally import EpochTally

CHECKPOINT = "checkpoint.npz"
INTERRUPTED = "interrupted.npz"


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or inf."""


def _one_logit(logits):
    return logits.ndim == 2 and logits.shape[1] == 1


def classification_loss(logits, labels):
    """The loss `fit` trains with: cross-entropy for logits (N, C) against integer labels (N,); for a single
    logit per example (N, 1), a binary classifier, binary cross-entropy with logits against the labels 0 and
    1 taken as floats (N, 1)."""
    if not _one_logit(logits):
        return F.cross_entropy(logits, labels)
    labels = getattr(labels, "data", labels)  # a Tensor's array, or an array
    if backend.get_array_module(labels) is np and labels.size:  # a GPU's are checked by train_epoch, less often
        F.check_label_range(int(labels.min()), int(labels.max()), 2,
                            f"a binary classifier, logits {logits.shape}: labels must be 0 or 1")
    targets = labels.astype(logits.dtype).reshape(-1, 1)
    return F.binary_cross_entropy_with_logits(logits, targets)


def predicted_labels(logits):
    """The predicted class of each example, an int64 array (N,) on the logits' device: the argmax of logits
    (N, C), or, for a single logit (N, 1), 1 where the logit is positive (probability above 1/2)."""
    if _one_logit(logits):
        return (logits.data[:, 0] > 0).astype(np.int64)
    return logits.data.argmax(axis=1)


def evaluate_accuracy(net, loader):
    """Fraction of correctly classified examples over `loader`, in evaluation mode, without a graph."""
    correct, total = 0, 0
    with evaluating(net):
        for images, labels in loader:
            predicted = predicted_labels(net(images))
            correct += (predicted == labels.data).sum()  # stays on the device until the end
            total += labels.shape[0]
    return float(correct) / max(total, 1)


def predict(net, loader):
    """(predicted labels, true labels) as NumPy arrays over the whole loader, in evaluation mode; the net's
    mode is restored, as in `evaluation.predict`."""
    preds, trues = [], []
    with evaluating(net):
        for images, labels in loader:
            preds.append(backend.to_numpy(predicted_labels(net(images))))
            trues.append(labels.numpy())
    return np.concatenate(preds), np.concatenate(trues)


def plot_history(history, path):
    """D2L's figure: train loss, train acc and test acc against (fractional) epochs, saved as PNG."""
    from .plotting import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    points = history["points"]
    if points:
        x = [p["epoch"] for p in points]
        ax.plot(x, [p["loss"] for p in points], label="train loss")
        ax.plot(x, [p["acc"] for p in points], "m--", label="train acc")
    epochs = history["epochs"]
    if epochs:
        ax.plot([e["epoch"] for e in epochs], [e["test_acc"] for e in epochs], "g-.", marker="o", label="test acc")
    ax.set_xlabel("epoch")
    ax.grid(True)
    ax.legend()
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def _write_json(obj, path):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


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
    path = os.path.join(run_dir, CHECKPOINT)
    state = load(path, device=device)
    net.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler"):
        scheduler.load_state_dict(state["scheduler"])
    backend.set_generator_state(state["rng"])
    return int(state["epoch"]), state["history"]


class RunFolder:
    """The files of a run. After every epoch: checkpoint.npz (the resume point), history.json, training.png
    and, with a gradient monitor, gradients.png; on Ctrl-C: interrupted.npz, which leaves the last epoch's
    checkpoint intact. The checkpoint, history.json and training.png are written to a temporary file and
    renamed, so a crash never leaves half of one behind. The folder is created with the first file written
    into it, so a run that fails before then leaves no empty folder behind."""

    def __init__(self, path):
        self.path = path

    @property
    def checkpoint(self):
        return os.path.join(self.path, CHECKPOINT)

    def save_epoch(self, state, monitor=None):
        """Write the end-of-epoch files from `state` (a `training_state`)."""
        os.makedirs(self.path, exist_ok=True)
        save(state, self.checkpoint)
        _write_json(state["history"], os.path.join(self.path, "history.json"))
        plot_history(state["history"], os.path.join(self.path, "training.png"))
        if monitor is not None:
            monitor.plot(os.path.join(self.path, "gradients.png"))

    def save_interrupted(self, state):
        """Write interrupted.npz (the weights at the moment of Ctrl-C); returns its path."""
        path = os.path.join(self.path, INTERRUPTED)
        os.makedirs(self.path, exist_ok=True)
        save(state, path)
        return path


def check_finite_loss(mean_loss, batch_loss, epoch, step, checkpoint=None):
    """Stop with TrainingDiverged if the running mean or the batch's loss is NaN or inf: nothing after that
    can recover, and the message says where it happened (`epoch` counted from 1) and which checkpoint is the
    last good one (`checkpoint`, None if there is none yet)."""
    if math.isfinite(mean_loss) and math.isfinite(batch_loss):
        return
    raise TrainingDiverged(
        f"the loss became {batch_loss} at epoch {epoch}, step {step}; last good checkpoint: "
        f"{checkpoint or 'none yet'}. Lower the learning rate (--lr) or check the data.")


def train_step(net, images, labels, optimizer, scheduler=None, clip_grad_norm=None, monitor=None):
    """One update on a batch: forward, the loss (`classification_loss`: cross-entropy, or binary cross-entropy
    for a single logit), backward, optional gradient clipping, the optimizer's
    step and, if given, a per-batch `scheduler.step()`. Returns (loss, logits)."""
    logits = net(images)
    loss = classification_loss(logits, labels)
    optimizer.zero_grad()
    loss.backward()
    if clip_grad_norm:
        clip_grad_norm_(net.parameters(), clip_grad_norm)
    if monitor is not None:
        monitor.before_step()
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    if monitor is not None:
        monitor.after_step()
    return loss, logits


def train_epoch(net, loader, optimizer, epoch, history, *, scheduler=None, clip_grad_norm=None, monitor=None,
                progress=True, log_every=20, checkpoint=None):
    """One pass over `loader` in training mode (`epoch` counts from 0), one `train_step` per batch (the
    keyword arguments up to `monitor` go to it), on the device of `net` (made CuPy's current device).
    Every `log_every` steps and at the last one, the running loss and accuracy go to the progress bar and to
    history["points"]. Returns (mean loss, accuracy, examples).

    Before each step the generators are derived from (the loader's seed, epoch, step) (see
    generators.derive_generators): the same seed that fixes the loader's order and flips fixes dropout's
    masks, so a resumed run repeats the one that went straight through, on the CPU and on a GPU.

    A NaN/inf loss raises TrainingDiverged naming `checkpoint`, a label outside the classes the ValueError of
    cross_entropy; a KeyboardInterrupt leaves with `.step` set to the steps done, for the caller's message.
    When the running numbers are read back from a GPU is `EpochTally`'s business."""
    loader.set_epoch(epoch)
    net.train()
    device = device_of(net)
    seed = getattr(loader, "seed", 0)
    with backend.use_device(device):
        tally = EpochTally(device, len(loader), log_every)
        bar = _progress(len(loader), f"epoch {epoch + 1}", progress)
        start = time.perf_counter()
        step = 0
        try:
            for step, (images, labels) in enumerate(loader, 1):
                backend.derive_generators(seed, epoch, step)
                loss, logits = train_step(net, images, labels, optimizer, scheduler, clip_grad_norm, monitor)
                classes = max(logits.shape[1], 2)  # one logit: a binary classifier, labels 0 and 1
                tally.add(loss, predicted_labels(logits), labels, classes)
                if tally.due(step):
                    mean_loss, batch_loss, acc = tally.read(f"seen by step {step} of epoch {epoch + 1}")
                    check_finite_loss(mean_loss, batch_loss, epoch + 1, step, checkpoint)
                    if tally.logging(step):
                        bar.set_postfix(loss=f"{mean_loss:.3f}", acc=f"{acc:.3f}",
                                        ex_s=f"{tally.seen / (time.perf_counter() - start):.0f}")
                        history["points"].append({"epoch": epoch + step / len(loader), "loss": mean_loss, "acc": acc})
                bar.update(1)
        except KeyboardInterrupt as exc:
            exc.step = step  # how far the epoch got: fit names it when it saves interrupted.npz
            raise
        finally:
            bar.close()
        return tally.totals()


def fit(net, train_loader, test_loader, optimizer, epochs, *, scheduler=None, out_dir=None, start_epoch=0,
        history=None, config=None, progress=True, log_every=20, monitor=None, print_fn=print,
        scheduler_per_step=False, clip_grad_norm=None):
    """Train `net` for `epochs` epochs (counting from `start_epoch`) and return the history dict.

    After each epoch: one line `epoch e, loss ..., train acc ..., test acc ..., time ... sec`; with an
    out_dir also the files of a `RunFolder` (plot, history.json, atomic checkpoint). Ctrl-C saves
    `interrupted.npz` (the weights at that moment) and re-raises; the last epoch's checkpoint stays
    intact for an exact resume (`restore` gives start_epoch and history). `scheduler.step(test_acc)` runs
    once per epoch, or `scheduler.step()` after every batch with scheduler_per_step=True.
    `monitor` (an inspection.GradientMonitor) records gradients at every step. `clip_grad_norm`: scale each
    step's gradients to at most this joint norm (nn.utils.clip_grad_norm_).

    Everything runs on the device of `net`, made CuPy's current device (so 'cuda:1' computes on GPU 1).
    Dropout's masks depend only on (train_loader.seed, epoch, step) (see train_epoch), which makes a resume
    exact on every device. On a GPU each epoch's record holds `peak_gpu_bytes`: the most memory CuPy's
    pool held during the epoch (cuda.memory_info()["peak"]).
    """
    history = history or {"epochs": [], "points": []}
    device = device_of(net)
    run = RunFolder(out_dir) if out_dir else None
    epoch_options = dict(scheduler=scheduler if scheduler_per_step else None, clip_grad_norm=clip_grad_norm,
                         monitor=monitor, progress=progress, log_every=log_every)
    total_examples, total_time = 0, 0.0
    with backend.use_device(device):
        for epoch in range(start_epoch, start_epoch + epochs):
            start = time.perf_counter()
            if device != "cpu":
                cuda.reset_peak_memory()
            try:
                loss, acc, seen = train_epoch(net, train_loader, optimizer, epoch, history, **epoch_options,
                                              checkpoint=run.checkpoint if run and epoch > 0 else None)
            except KeyboardInterrupt as exc:
                _save_interrupted(run, training_state(net, optimizer, scheduler, epoch, history, config),
                                  epoch, exc, print_fn)
                raise
            train_time = time.perf_counter() - start
            test_acc = evaluate_accuracy(net, test_loader)
            record = {"epoch": epoch + 1, "loss": loss, "train_acc": acc, "test_acc": test_acc, "lr": optimizer.lr,
                      "time": time.perf_counter() - start, "examples_per_sec": seen / train_time}
            if device != "cpu":
                record["peak_gpu_bytes"] = cuda.memory_info()["peak"]
            history["epochs"].append(record)
            print_fn(_epoch_line(record))
            if scheduler is not None and not scheduler_per_step:
                _advance(scheduler, test_acc)
            if run:
                run.save_epoch(training_state(net, optimizer, scheduler, epoch + 1, history, config), monitor)
            total_examples, total_time = total_examples + seen, total_time + train_time
    _print_summary(history, total_examples, total_time, device, print_fn)
    return history


def _advance(scheduler, test_acc):
    """The end-of-epoch scheduler step: every scheduler takes the epoch's metric (ReduceLROnPlateau uses it)."""
    scheduler.step(test_acc)


def _save_interrupted(run, state, epoch, exc, print_fn):
    """On Ctrl-C: write interrupted.npz into the run folder, if there is one, and say how to resume."""
    if run is None:
        return
    path = run.save_interrupted(state)
    print_fn(f"interrupted at epoch {epoch + 1}, step {getattr(exc, 'step', 0)}: weights saved to {path}; "
             f"resume from the last full epoch with --resume {run.path}")


def _print_summary(history, examples, seconds, device, print_fn):
    if not history["epochs"]:
        return
    last = history["epochs"][-1]
    print_fn(f"loss {last['loss']:.3f}, train acc {last['train_acc']:.3f}, test acc {last['test_acc']:.3f}")
    if seconds:
        print_fn(f"{examples / seconds:.1f} examples/sec on {device}")


def _epoch_line(record):
    gpu = f", GPU memory peak {record['peak_gpu_bytes'] / 2**20:.0f} MiB" if "peak_gpu_bytes" in record else ""
    return (f"epoch {record['epoch']}, loss {record['loss']:.4f}, train acc {record['train_acc']:.3f}, "
            f"test acc {record['test_acc']:.3f}, time {record['time']:.1f} sec{gpu}")


class _NoBar:
    def set_postfix(self, **kwargs):
        pass

    def update(self, n):
        pass

    def close(self):
        pass


def _progress(total, desc, enabled):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, disable=None, dynamic_ncols=True)
