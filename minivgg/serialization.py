"""`minivgg.save` / `minivgg.load`: state dicts and checkpoints as NumPy .npz files, written atomically.

Nested dicts are flattened with '/' in the keys. Arrays are stored as arrays (copied to the host first);
everything else (numbers, strings, lists, the random generator's state) goes into one JSON entry.
`load` reads every entry in full, so a damaged file is refused with a `CheckpointError` naming the file
and the entry, never half-used; `check_checkpoint` then checks that a run's checkpoint holds what a run needs.
"""
import json
import os
import zipfile
import zlib

import numpy as np

from . import backend
from .autograd import Tensor
from .files import replacing

_JSON_KEY = "__json__"
DAMAGED = "use an earlier copy of it, or train again"


class CheckpointError(ValueError):
    """A .npz file (a checkpoint or a state dict) cannot be used: damaged, unreadable, or not a run's
    checkpoint."""


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
        if name in arrays and arrays[name].dtype.hasobject:  # load refuses pickled data, so never write it
            raise TypeError(f"save: {name!r} is an array of Python objects (dtype {arrays[name].dtype}), which "
                            "load cannot read back; store numbers (an array of a numeric dtype) or a list")


def _set_nested(root, name, value):
    parts = name.split("/")
    node = root
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _to_json(other):
    try:
        return json.dumps(other)
    except (TypeError, ValueError):
        for name, value in other.items():  # name the value that fails
            try:
                json.dumps(value)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"save: {name!r} is neither an array nor JSON-serializable ({exc})") from None
        raise


def save(obj, path):
    """Write a dict (a state dict, or a checkpoint of nested dicts) to `path` (.npz) atomically:
    a temporary file in the same folder, then a rename, so a crash never leaves half a file."""
    if not isinstance(obj, dict):
        raise TypeError(f"save: expected a dict such as net.state_dict(), got {type(obj).__name__}")
    arrays, other = {}, {}
    _flatten(obj, "", arrays, other)
    if other:
        arrays[_JSON_KEY] = np.array(_to_json(other))
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with replacing(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())


# ---------------------------------------------------------------------------------------------------
# Reading, with every entry checked
# ---------------------------------------------------------------------------------------------------
def _damaged(path, what):
    return CheckpointError(f"{path} is damaged ({what}); {DAMAGED}")


def _open(path):
    """The file as a ZipFile; a missing or unreadable file and one that is no zip archive each say so."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no file at {path}")
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a folder, not a .npz file; give the file (a run's checkpoint.npz)")
    try:
        return zipfile.ZipFile(path)
    except PermissionError:
        raise CheckpointError(f"{path} cannot be read: permission denied; fix its permissions "
                              f"(chmod u+r {path})") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise _damaged(path, "not a complete .npz archive: cut short, or not written by minivgg.save") from None


def _read_entry(archive, info, path):
    """One entry as an array, read to its end so that its CRC-32 is checked."""
    name = info.filename[:-len(".npy")] if info.filename.endswith(".npy") else info.filename
    try:
        with archive.open(info) as f:
            array = np.lib.format.read_array(f, allow_pickle=False)
            if f.read(1):
                raise ValueError("bytes left over after the array")
    except ValueError as exc:
        if "pickle" in str(exc) or "object" in str(exc):
            raise _damaged(path, f"entry {name!r} holds pickled (object) data, which save never writes") from None
        reason = str(exc).split(";")[0]  # numpy's own words, without the bytes it found
        raise _damaged(path, f"entry {name!r} has a damaged header or data: {reason}") from None
    except MemoryError:  # a damaged header can claim a huge shape
        raise _damaged(path, f"entry {name!r} claims a shape larger than memory") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, KeyError, NotImplementedError) as exc:
        what = ("fails its CRC-32 check" if "CRC" in str(exc) else "has a damaged zip header" if "differ" in str(exc)
                else f"cannot be read: {exc}")
        raise _damaged(path, f"entry {name!r} {what}") from None
    return name, array


def _parse_json(array, path):
    try:
        other = json.loads(str(array))
    except (ValueError, TypeError) as exc:
        raise _damaged(path, f"its JSON entry cannot be parsed: {exc}") from None
    if not isinstance(other, dict):
        raise _damaged(path, f"its JSON entry holds a {type(other).__name__}, not a dict")
    return other


def _read(path, only_json=False):
    """{entry name: array} of every entry (or of the JSON entry alone), each read and checked in full."""
    with _open(path) as archive:
        try:
            infos = archive.infolist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise _damaged(path, str(exc)) from None
        if only_json:
            infos = [i for i in infos if i.filename == _JSON_KEY + ".npy"]
        return dict(_read_entry(archive, info, path) for info in infos)


def load(path, device="cpu"):
    """Read what `save` wrote; arrays come back on `device` ('cpu' or 'cuda'). A damaged file raises
    CheckpointError naming the file and the entry; a missing one FileNotFoundError."""
    path = os.fspath(path)
    entries = _read(path)
    result = {}
    try:
        if _JSON_KEY in entries:
            for name, value in _parse_json(entries.pop(_JSON_KEY), path).items():
                _set_nested(result, name, value)
        for name, array in entries.items():
            _set_nested(result, name, backend.to_device(array, device))
    except (TypeError, AttributeError):  # an entry's name clashes with another's: 'a' and 'a/b'
        raise _damaged(path, "two entries claim the same name") from None
    return result


def read_json(path):
    """The JSON part of what `save` wrote (every entry that is not an array), nested as `load` nests it,
    reading no arrays. Raises CheckpointError as `load` does."""
    path = os.fspath(path)
    entries = _read(path, only_json=True)
    nested = {}
    if _JSON_KEY in entries:
        for name, value in _parse_json(entries[_JSON_KEY], path).items():
            _set_nested(nested, name, value)
    return nested
