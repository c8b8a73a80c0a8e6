"""`minivgg.save` / `minivgg.load`: state dicts and checkpoints as NumPy .npz files, written atomically.

Nested dicts are flattened with '/' in the keys. Arrays are stored as arrays (copied to the host first);
everything else (numbers, strings, lists, the random generator's state) goes into one JSON entry.
"""
import json
import os
import tempfile

import numpy as np

from . import backend
from .autograd import Tensor

_JSON_KEY = "__json__"


def _flatten(obj, prefix, arrays, other):
    for key, value in obj.items():
        if not isinstance(key, str) or "/" in key:
            raise ValueError(f"save: keys must be strings without '/', got {key!r}")
        name = f"{prefix}/{key}" if prefix else key
        if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
            _flatten(value, name, arrays, other)
        elif isinstance(value, Tensor):
            arrays[name] = backend.to_numpy(value.data)
        elif hasattr(value, "shape") and hasattr(value, "dtype"):
            arrays[name] = backend.to_numpy(value)
        else:
            other[name] = value


def _set_nested(root, name, value):
    parts = name.split("/")
    node = root
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def save(obj, path):
    """Write a dict (a state dict, or a checkpoint of nested dicts) to `path` (.npz) atomically:
    a temporary file in the same folder, then a rename, so a crash never leaves half a file."""
    if not isinstance(obj, dict):
        raise TypeError(f"save: expected a dict such as net.state_dict(), got {type(obj).__name__}")
    arrays, other = {}, {}
    _flatten(obj, "", arrays, other)
    if other:
        try:
            arrays[_JSON_KEY] = np.array(json.dumps(other))
        except TypeError as exc:
            raise TypeError(f"save: a value is neither an array nor JSON-serializable ({exc})") from None
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load(path, device="cpu"):
    """Read what `save` wrote; arrays come back on `device` ('cpu' or 'cuda')."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no file at {path!r}")
    try:
        with np.load(path, allow_pickle=False) as data:
            entries = {k: data[k] for k in data.files}
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"load: {path!r} is not a readable minivgg .npz file ({exc}). "
                         "Was it written by minivgg.save, and completely?") from None
    result = {}
    if _JSON_KEY in entries:
        for name, value in json.loads(str(entries.pop(_JSON_KEY))).items():
            _set_nested(result, name, value)
    for name, array in entries.items():
        _set_nested(result, name, backend.to_device(array, device))
    return result
