"""The training loop: `fit` with a progress bar, D2L's per-epoch line and plot, history.json, atomic
checkpoints after every epoch and on Ctrl-C, exact resume, and a clear stop on a NaN/inf loss."""
import json
import math
import os
import time

import numpy as np

from . import backend
from . import functional as F
from .autograd import no_grad
from .nn.utils import clip_grad_norm_
from .serialization import load, save

CHECKPOINT = "checkpoint.npz"
INTERRUPTED = "interrupted.npz"


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or inf."""


def evaluate_accuracy(net, loader):
    """Fraction of correctly classified examples over `loader`, in evaluation mode, without a graph."""
    was_training = net.training
    net.eval()
    correct, total = 0, 0
    with no_grad():
        for images, labels in loader:
            predicted = net(images).data.argmax(axis=1)
            correct += (predicted == labels.data).sum()  # stays on the device until the end
            total += labels.shape[0]
    net.train(was_training)
    return float(correct) / max(total, 1)


def predict(net, loader):
    """(predicted labels, true labels) as NumPy arrays over the whole loader."""
    net.eval()
    preds, trues = [], []
    with no_grad():
        for images, labels in loader:
            preds.append(backend.to_numpy(net(images).data.argmax(axis=1)))
            trues.append(labels.numpy())
    return np.concatenate(preds), np.concatenate(trues)


def plot_history(history, path):
    """D2L's figure: train loss, train acc and test acc against (fractional) epochs, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def _checkpoint(net, optimizer, scheduler, epoch, history, config):
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


def fit(net, train_loader, test_loader, optimizer, epochs, scheduler=None, out_dir=None, start_epoch=0,
        history=None, config=None, progress=True, log_every=20, monitor=None, print_fn=print,
        scheduler_per_step=False, clip_grad_norm=None):
    """Train `net` for `epochs` epochs (counting from `start_epoch`) and return the history dict.

    After each epoch: one line `epoch e, loss ..., train acc ..., test acc ..., time ... sec`; with an
    out_dir also the plot (`training.png`), `history.json` and `checkpoint.npz` (atomic). Ctrl-C saves
    `interrupted.npz` (the weights at that moment) and re-raises; the last epoch's checkpoint stays
    intact for an exact resume. `scheduler.step()` runs once per epoch (ReduceLROnPlateau gets the test
    accuracy), or after every batch with scheduler_per_step=True. `monitor` (an inspect.GradientMonitor) records gradients at every step.
    `clip_grad_norm`: scale each step's gradients to at most this joint norm (nn.utils.clip_grad_norm_).
    """
    history = history or {"epochs": [], "points": []}
    device = next(net.parameters()).device
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    num_batches = len(train_loader)
    total_examples, total_time = 0, 0.0
    epoch = start_epoch
    for epoch in range(start_epoch, start_epoch + epochs):
        train_loader.set_epoch(epoch)
        net.train()
        start = time.perf_counter()
        xp = backend.array_module_for(device)
        loss_sum, correct, seen = xp.zeros((), dtype=np.float64), xp.zeros((), dtype=np.int64), 0
        bar = _progress(num_batches, f"epoch {epoch + 1}", progress)
        step = 0
        try:
            for step, (images, labels) in enumerate(train_loader, 1):
                logits = net(images)
                loss = F.cross_entropy(logits, labels)
                optimizer.zero_grad()
                loss.backward()
                if clip_grad_norm:
                    clip_grad_norm_(net.parameters(), clip_grad_norm)
                if monitor is not None:
                    monitor.before_step()
                optimizer.step()
                if scheduler_per_step:
                    scheduler.step()
                if monitor is not None:
                    monitor.after_step()
                n = labels.shape[0]
                loss_sum += loss.data * n
                correct += (logits.data.argmax(axis=1) == labels.data).sum()
                seen += n
                if step % log_every == 0 or step == num_batches or device == "cpu":
                    mean_loss = float(loss_sum) / seen  # the one synchronization per logging step
                    if not math.isfinite(mean_loss) or not math.isfinite(float(loss.data)):
                        last = os.path.join(out_dir, CHECKPOINT) if out_dir and epoch > 0 else "none yet"
                        raise TrainingDiverged(
                            f"the loss became {float(loss.data)} at epoch {epoch + 1}, step {step}; last good "
                            f"checkpoint: {last}. Lower the learning rate (--lr) or check the data.")
                    if step % log_every == 0 or step == num_batches:
                        acc = float(correct) / seen
                        rate = seen / (time.perf_counter() - start)
                        bar.set_postfix(loss=f"{mean_loss:.3f}", acc=f"{acc:.3f}", ex_s=f"{rate:.0f}")
                        history["points"].append({"epoch": epoch + step / num_batches, "loss": mean_loss,
                                                  "acc": acc})
                bar.update(1)
        except KeyboardInterrupt:
            bar.close()
            if out_dir:
                save(_checkpoint(net, optimizer, scheduler, epoch, history, config),
                     os.path.join(out_dir, INTERRUPTED))
                print_fn(f"interrupted at epoch {epoch + 1}, step {step}: weights saved to "
                         f"{os.path.join(out_dir, INTERRUPTED)}; resume from the last full epoch with "
                         f"--resume {out_dir}")
            raise
        bar.close()
        train_time = time.perf_counter() - start
        test_acc = evaluate_accuracy(net, test_loader)
        elapsed = time.perf_counter() - start
        total_examples += seen
        total_time += train_time
        record = {"epoch": epoch + 1, "loss": float(loss_sum) / max(seen, 1), "train_acc": float(correct) / max(seen, 1),
                  "test_acc": test_acc, "lr": optimizer.lr, "time": elapsed, "examples_per_sec": seen / train_time}
        if device != "cpu":
            from . import cuda

            record["peak_gpu_bytes"] = cuda.memory_info()["total"]
        history["epochs"].append(record)
        print_fn(f"epoch {epoch + 1}, loss {record['loss']:.4f}, train acc {record['train_acc']:.3f}, "
                 f"test acc {test_acc:.3f}, time {elapsed:.1f} sec"
                 + (f", GPU memory {record['peak_gpu_bytes'] / 2**20:.0f} MiB" if "peak_gpu_bytes" in record else ""))
        if scheduler is not None and not scheduler_per_step:
            scheduler.step(test_acc) if hasattr(scheduler, "bad_epochs") else scheduler.step()
        if out_dir:
            save(_checkpoint(net, optimizer, scheduler, epoch + 1, history, config), os.path.join(out_dir, CHECKPOINT))
            _write_json(history, os.path.join(out_dir, "history.json"))
            plot_history(history, os.path.join(out_dir, "training.png"))
            if monitor is not None:
                monitor.plot(os.path.join(out_dir, "gradients.png"))
    if history["epochs"]:
        last = history["epochs"][-1]
        print_fn(f"loss {last['loss']:.3f}, train acc {last['train_acc']:.3f}, test acc {last['test_acc']:.3f}")
        if total_time:
            print_fn(f"{total_examples / total_time:.1f} examples/sec on {device}")
    return history


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
