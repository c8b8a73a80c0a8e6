"""A run's checkpoint: what it must hold (`train.training_state` writes it) and its checks on reading.

`serialization` reads and writes any .npz; this module knows what a run's checkpoint is, so that resume,
evaluate and inspect refuse a damaged or edited one with a line naming the file.
"""
from .config import RunConfig
from .serialization import DAMAGED, CheckpointError, load, read_json


def read_config(path):
    """A run's config (the settings it was trained with) from its checkpoint, reading only the JSON entry
    (cheap: no arrays). Raises CheckpointError as `load` does, and when the config is missing or invalid."""
    nested = read_json(path)
    if "config" not in nested:
        raise CheckpointError(f"{path} holds no run config: it is not a run's checkpoint.npz (minivgg train "
                              "writes one into its run folder)")
    _check_config(nested["config"], path)
    return nested["config"]


def load_checkpoint(path, device="cpu"):
    """`load` a run's checkpoint, then `check_checkpoint` it: what resume, evaluate and inspect should use."""
    state = load(path, device=device)
    check_checkpoint(state, path)
    return state


CHECKPOINT_KEYS = {"model": dict, "optimizer": dict, "scheduler": dict, "rng": dict, "epoch": int,
                   "history": dict, "config": dict}


def check_checkpoint(obj, path):
    """Raise CheckpointError naming `path` and the first entry missing or of the wrong kind, if `obj` (what
    `load` returned) is not a run's checkpoint as `train.training_state` writes it."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a run's checkpoint (a dict), got {type(obj).__name__}")
    missing = [key for key in CHECKPOINT_KEYS if key not in obj]
    if missing:
        raise CheckpointError(f"{path} is not a complete run checkpoint: no {', '.join(missing)} "
                              f"(it holds {', '.join(sorted(obj)) or 'nothing'}); {DAMAGED}")
    for key, kind in CHECKPOINT_KEYS.items():
        value = obj[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise CheckpointError(f"{path}: entry {key!r} must be a whole number >= 0, got {value!r}; {DAMAGED}")
        if kind is dict and not isinstance(value, dict):
            raise CheckpointError(f"{path}: entry {key!r} must be a dict, got {type(value).__name__}; {DAMAGED}")
    if not obj["model"]:
        raise CheckpointError(f"{path}: entry 'model' holds no weights; {DAMAGED}")
    history = obj["history"]
    for key in ("epochs", "points"):
        if not isinstance(history.get(key), list):
            raise CheckpointError(f"{path}: entry 'history' has no list {key!r}; {DAMAGED}")
    _check_config(obj["config"], path)


def _check_config(config, path):
    """The config's own checks (RunConfig.from_dict validates every field), as a CheckpointError naming the file."""
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: its run config is a {type(config).__name__}, not a dict; {DAMAGED}")
    try:
        RunConfig.from_dict(config)
    except (ValueError, TypeError) as exc:
        reason = str(exc).removeprefix("run config: ")
        raise CheckpointError(f"{path}: its run config is wrong: {reason} (was the file edited?); {DAMAGED}"
                              ) from None
