"""matplotlib for the whole package. Every figure minivgg draws is written to a file, often on a machine
without a screen; the user's own choice of backend (a notebook's, MPLBACKEND, matplotlib.use) is kept.
matplotlib is imported on the first call only: `import minivgg` stays NumPy-only and a run that draws
nothing never pays for matplotlib."""
import os
import sys


def pyplot():
    """matplotlib.pyplot. On a machine without a display, where nothing chose a backend yet, the Agg
    backend (files only); a backend already chosen (a notebook's, MPLBACKEND, matplotlib.use) is kept."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and _backend_unchosen(matplotlib) and not _has_display():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _backend_unchosen(matplotlib):
    chosen = getattr(matplotlib.rcParams, "_get_backend_or_none", None)
    return chosen is not None and chosen() is None


def _has_display():
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def savefig(fig, path, dpi=100):
    """fig.savefig(path) whole or not at all: a temporary file renamed over `path` (a symlink there is
    replaced, not written through)."""
    from .files import replacing

    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=dpi)


def plot_confusion(confusion, names, path):
    """Write a confusion matrix (confusion[i, j]: class i predicted as j) with its counts to `path`."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    image = ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=6,
                    color="white" if confusion[i, j] > confusion.max() / 2 else "black")
    fig.colorbar(image)
    fig.tight_layout()
    try:
        savefig(fig, path)
    finally:
        plt.close(fig)


def plot_history(history, path):
    """D2L's figure: train loss, train acc and test acc against (fractional) epochs, saved as PNG."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    points = history["points"]
    if points:
        x = [p["epoch"] for p in points]
        ax.plot(x, [p["loss"] for p in points], label="train loss")
        ax.plot(x, [p["acc"] for p in points], "m--", label="train acc")
    epochs = history["epochs"]
    if epochs:
        tested = [e for e in epochs if e["test_acc"] is not None]  # not yet: a run stopped in its test pass
        ax.plot([e["epoch"] for e in tested], [e["test_acc"] for e in tested], "g-.", marker="o", label="test acc")
    ax.set_xlabel("epoch")
    ax.grid(True)
    if points or epochs:
        ax.legend()
    fig.tight_layout()
    try:
        savefig(fig, path)
    finally:
        plt.close(fig)
