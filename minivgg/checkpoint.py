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
    _require_config(nested["config"], path)
    return nested["config"]


def load_checkpoint(path, device="cpu", needs_config=True, keys=None):
    """`load` a run's checkpoint, then `check_checkpoint` it: what resume, evaluate and inspect should use.
    With `needs_config` (the command's case: it rebuilds the network from it) a checkpoint without a run
    config is refused; `train.restore` into a network the caller built needs none. `keys`: check only these
    entries (--init-from reads the weights and the config alone)."""
    state = load(path, device=device)
    check_checkpoint(state, path, keys)
    if needs_config:
        _require_config(state["config"], path)
    return state


def _require_config(config, path):
    """A run written by `fit(out_dir=...)` without `config` holds no settings to rebuild its network from."""
    if not config or "arch" not in config:
        raise CheckpointError(f"{path} was written by fit() without a run config (arch, ratio, ...), so its network "
                              f"cannot be rebuilt: pass config=RunConfig(...).to_dict() to fit(out_dir=...), or "
                              f"train with minivgg train")


CHECKPOINT_KEYS = {"model": dict, "optimizer": dict, "scheduler": dict, "rng": dict, "epoch": int,
                   "history": dict, "config": dict}


def check_checkpoint(obj, path, keys=None):
    """Raise CheckpointError naming `path` and the first entry missing or of the wrong kind, if `obj` (what
    `load` returned) is not a run's checkpoint as `train.training_state` writes it (`keys`: only these
    entries; default all)."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a run's checkpoint (a dict), got {type(obj).__name__}")
    kinds = {key: kind for key, kind in CHECKPOINT_KEYS.items() if keys is None or key in keys}
    missing = [key for key in kinds if key not in obj]
    if missing:
        raise CheckpointError(f"{path} is not a complete run checkpoint: no {', '.join(missing)} "
                              f"(it holds {', '.join(sorted(obj)) or 'nothing'}); {DAMAGED}")
    for key, kind in kinds.items():
        value = obj[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise CheckpointError(f"{path}: entry {key!r} must be a whole number >= 0, got {value!r}; {DAMAGED}")
        if kind is dict and not isinstance(value, dict):
            raise CheckpointError(f"{path}: entry {key!r} must be a dict, got {type(value).__name__}; {DAMAGED}")
    if "model" in kinds and not obj["model"]:
        raise CheckpointError(f"{path}: entry 'model' holds no weights; {DAMAGED}")
    for key in ("epochs", "points") if "history" in kinds else ():
        if not isinstance(obj["history"].get(key), list):
            raise CheckpointError(f"{path}: entry 'history' has no list {key!r}; {DAMAGED}")
    if "history" in kinds:
        _check_history(obj["history"], path)
    if "config" in kinds:
        _check_config(obj["config"], path)


# what fit records: per epoch (None where not measured yet), and at every logged step
EPOCH_NUMBERS = {"epoch": False, "loss": False, "train_acc": False, "test_acc": True, "val_acc": True, "lr": True,
                 "time": True, "examples_per_sec": True, "peak_gpu_bytes": True}  # name: may be None
POINT_NUMBERS = ("epoch", "loss", "acc")


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_history(history, path):
    """Every record of history's epochs and points a dict of numbers, as fit writes them."""
    for i, record in enumerate(history["epochs"]):
        where = f"entry 'history/epochs/{i}'"
        if not isinstance(record, dict):
            raise CheckpointError(f"{path}: {where} must be a dict of the epoch's numbers, got {record!r}; {DAMAGED}")
        for key, optional in EPOCH_NUMBERS.items():
            value = record.get(key)
            if not (_is_number(value) or (optional and value is None)):
                raise CheckpointError(f"{path}: {where}/{key} must be a number, got {value!r}; {DAMAGED}")
    for i, point in enumerate(history["points"]):
        if not (isinstance(point, dict) and all(_is_number(point.get(key)) for key in POINT_NUMBERS)):
            raise CheckpointError(f"{path}: entry 'history/points/{i}' must be a dict of the numbers "
                                  f"{', '.join(POINT_NUMBERS)}, got {point!r}; {DAMAGED}")


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
