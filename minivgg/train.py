"""The training loop: `fit` with a progress bar, D2L's per-epoch line and plot, history.json, atomic
checkpoints after every epoch and on Ctrl-C, exact resume, and a clear stop on a NaN/inf loss.

`fit` runs epochs of `train_epoch` (one `train_step` per batch, `check_finite_loss` on the running loss),
evaluates, and writes the run's files through a `RunFolder`."""
import math
import os
import time

import numpy as np

from . import backend, cuda
from . import functional as F
from .nn.utils import clip_grad_norm_, device_of, evaluating
# CHECKPOINT, INTERRUPTED and restore are read through this module by the CLI and by scripts
from .runs import CHECKPOINT, INTERRUPTED, RunFolder, copied_state, restore, training_state  # noqa: F401
from .tally import EpochTally


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


def announce(callbacks, phase, epoch):
    """Tell each of `callbacks` that `phase` ('step', 'test' or 'checkpoint') of epoch `epoch` (from 1) begins."""
    for callback in callbacks:
        callback(phase, epoch)


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
                progress=True, log_every=20, checkpoint=None, callbacks=()):
    """One pass over `loader` in training mode (`epoch` counts from 0), one `train_step` per batch (the
    keyword arguments up to `monitor` go to it), on the device of `net` (made CuPy's current device).
    Every `log_every` steps and at the last one, the running loss and accuracy go to the progress bar and to
    history["points"]. Returns (mean loss, accuracy, examples).

    Before each step the generators are derived from (the loader's seed, epoch, step) (see
    generators.derive_generators): the same seed that fixes the loader's order and flips fixes dropout's
    masks, so a resumed run repeats the one that went straight through, on the CPU and on a GPU.

    A NaN/inf loss raises TrainingDiverged naming `checkpoint`, a label outside the classes the ValueError of
    cross_entropy; a KeyboardInterrupt leaves with `.step` set to the steps done, for the caller's message.
    When the running numbers are read back from a GPU is `EpochTally`'s business. Each of `callbacks` is
    called as callback('step', epoch + 1) before each step (see `fit`)."""
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
                announce(callbacks, "step", epoch + 1)
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
        scheduler_per_step=False, clip_grad_norm=None, val_loader=None, callbacks=()):
    """Train `net` for `epochs` epochs (counting from `start_epoch`) and return the history dict.

    After each epoch: one line `epoch e, loss ..., train acc ..., test acc ..., time ... sec`; with an
    out_dir also the files of a `RunFolder` (plot, history.json, atomic checkpoint); `config` (a dict:
    RunConfig.to_dict()) goes into the checkpoint, and `minivgg evaluate`, `inspect --run` and `--resume`
    rebuild the network from it. Ctrl-C never loses a finished epoch, and re-raises: during an epoch's
    steps it saves `interrupted.npz` (the weights at that moment) and keeps the last epoch's checkpoint (in
    the first epoch: a checkpoint of the start, epoch 0); during the test pass it saves the trained epoch
    without its test accuracy, which the resumed run computes first; during the checkpoint's write it
    writes it again. `restore` gives start_epoch and history for an exact resume. `scheduler.step(test_acc)` runs
    once per epoch, or `scheduler.step()` after every batch with scheduler_per_step=True; with a `val_loader`
    (a validation split held out from the training images) each epoch also records `val_acc`, and the
    scheduler steps on it instead of the test accuracy, so the test set never chooses the schedule.
    `monitor` (an inspection.GradientMonitor) records gradients at every step. `clip_grad_norm`: scale each
    step's gradients to at most this joint norm (nn.utils.clip_grad_norm_). `callbacks`: functions called as
    callback(phase, epoch) when a phase of an epoch (from 1) begins: 'step' (before each step), 'test' and
    'checkpoint'; to watch a run, or to stop it at a chosen moment (the tests of Ctrl-C do).

    Everything runs on the device of `net`, made CuPy's current device (so 'cuda:1' computes on GPU 1).
    Dropout's masks depend only on (train_loader.seed, epoch, step) (see train_epoch), which makes a resume
    exact on every device. On a GPU each epoch's record holds `peak_gpu_bytes`: the most memory CuPy's
    pool held during the epoch (cuda.memory_info()["peak"]).
    """
    run = _Fit(net, train_loader, test_loader, optimizer, scheduler, RunFolder(out_dir) if out_dir else None,
               history or {"epochs": [], "points": []}, config, monitor, print_fn, scheduler_per_step,
               dict(scheduler=scheduler if scheduler_per_step else None, clip_grad_norm=clip_grad_norm,
                    monitor=monitor, progress=progress, log_every=log_every, callbacks=callbacks), val_loader)
    total_examples, total_time = 0, 0.0
    with backend.use_device(run.device):
        if run.history["epochs"] and run.history["epochs"][-1]["test_acc"] is None:
            run.finish(start_epoch - 1, run.history["epochs"][-1], time.perf_counter())  # stopped in its test
        if run.folder and start_epoch == 0:
            run.start_state = copied_state(run.state(0))  # written only if Ctrl-C comes before the first epoch ends
        for epoch in range(start_epoch, start_epoch + epochs):
            seen, train_time = run.epoch(epoch)
            total_examples, total_time = total_examples + seen, total_time + train_time
    _print_summary(run.history, total_examples, total_time, run.device, print_fn)
    return run.history


class _Fit:
    """One call of `fit`: its parts, and each epoch with what Ctrl-C saves at each phase."""

    def __init__(self, net, train_loader, test_loader, optimizer, scheduler, folder, history, config, monitor,
                 print_fn, scheduler_per_step, epoch_options, val_loader=None):
        self.net, self.train_loader, self.test_loader, self.val_loader = net, train_loader, test_loader, val_loader
        self.optimizer, self.scheduler, self.folder, self.history = optimizer, scheduler, folder, history
        self.config, self.monitor, self.print_fn = config, monitor, print_fn
        self.scheduler_per_step, self.epoch_options = scheduler_per_step, epoch_options
        self.device, self.start_state = device_of(net), None

    def state(self, epochs_done):
        return training_state(self.net, self.optimizer, self.scheduler, epochs_done, self.history, self.config)

    def epoch(self, epoch):
        """Train epoch `epoch` (from 0), test, save; returns (examples, seconds of training)."""
        start = time.perf_counter()
        if self.device != "cpu":
            cuda.reset_peak_memory()
        last_good = self.folder.checkpoint if self.folder and os.path.exists(self.folder.checkpoint) else None
        try:
            loss, acc, seen = train_epoch(self.net, self.train_loader, self.optimizer, epoch, self.history,
                                          **self.epoch_options, checkpoint=last_good)
        except KeyboardInterrupt as exc:
            self.interrupted_in_steps(epoch, exc)
            raise
        train_time = time.perf_counter() - start
        record = {"epoch": epoch + 1, "loss": loss, "train_acc": acc, "test_acc": None, "lr": self.optimizer.lr,
                  "time": None, "examples_per_sec": seen / train_time}
        self.history["epochs"].append(record)
        try:
            self.finish(epoch, record, start)
        except KeyboardInterrupt:
            self.interrupted_after_steps(epoch, record)
            raise
        return seen, train_time

    def finish(self, epoch, record, start):
        """The end of epoch `epoch` whose training is done: the test pass, the epoch's line, the scheduler's
        end-of-epoch step, the run's files."""
        announce(self.epoch_options["callbacks"], "test", epoch + 1)
        test_acc = evaluate_accuracy(self.net, self.test_loader)
        if self.val_loader is not None:
            record["val_acc"] = evaluate_accuracy(self.net, self.val_loader)
        if self.scheduler is not None and not self.scheduler_per_step:
            _advance(self.scheduler, record.get("val_acc", test_acc))
        record["test_acc"] = test_acc  # set last: a record with a test accuracy had its scheduler step
        record["time"] = record["time"] or time.perf_counter() - start
        if self.device != "cpu":
            record["peak_gpu_bytes"] = cuda.memory_info()["peak"]
        self.print_fn(_epoch_line(record))
        if self.folder:
            announce(self.epoch_options["callbacks"], "checkpoint", epoch + 1)
            self.folder.save_epoch(self.state(epoch + 1), self.monitor)

    def interrupted_in_steps(self, epoch, exc):
        """Ctrl-C during epoch `epoch`'s steps: interrupted.npz, and a checkpoint of the start if none."""
        if self.folder is None:
            return
        path = self.folder.save_interrupted(self.state(epoch))
        if self.start_state is not None and not os.path.exists(self.folder.checkpoint):
            self.folder.save_epoch(self.start_state)
        done = f"epoch {epoch}" if epoch else "the start of the run (epoch 0)"
        self.print_fn(f"interrupted at epoch {epoch + 1}, step {getattr(exc, 'step', 0)}: the weights at that "
                      f"moment are in {path}; {self.folder.checkpoint} holds {done}")

    def interrupted_after_steps(self, epoch, record):
        """Ctrl-C after epoch `epoch`'s steps: the trained epoch is saved, its test accuracy left to the resume."""
        if self.folder is None:
            return
        state = self.state(epoch + 1)
        self.folder.save_state(state)
        try:
            self.folder.draw(state, self.monitor)
        except Exception as exc:  # the epoch is saved: a plot the stop left undrawable is not worth losing it
            self.print_fn(f"note: training.png was not drawn ({type(exc).__name__}: {exc}); the resumed run draws it")
        later = " (its test accuracy is computed when the run resumes)" if record["test_acc"] is None else ""
        self.print_fn(f"interrupted after the training of epoch {epoch + 1}: it is saved in "
                      f"{self.folder.checkpoint}{later}")


def _advance(scheduler, test_acc):
    """The end-of-epoch scheduler step: every scheduler takes the epoch's metric (ReduceLROnPlateau uses it)."""
    scheduler.step(test_acc)


def _print_summary(history, examples, seconds, device, print_fn):
    if not history["epochs"]:
        return
    last = history["epochs"][-1]
    print_fn(f"loss {last['loss']:.3f}, train acc {last['train_acc']:.3f}, test acc {last['test_acc']:.3f}")
    if seconds:
        print_fn(f"{examples / seconds:.1f} examples/sec on {device}")


def _epoch_line(record):
    gpu = f", GPU memory peak {record['peak_gpu_bytes'] / 2**20:.0f} MiB" if "peak_gpu_bytes" in record else ""
    val = f"val acc {record['val_acc']:.3f}, " if record.get("val_acc") is not None else ""
    return (f"epoch {record['epoch']}, loss {record['loss']:.4f}, train acc {record['train_acc']:.3f}, "
            f"{val}test acc {record['test_acc']:.3f}, time {record['time']:.1f} sec{gpu}")


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
