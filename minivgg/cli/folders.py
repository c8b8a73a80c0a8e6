"""The file system of the `minivgg` command: is a folder a run, an image folder, writable; and the loaders of a
run trained on an image folder (its own images, split as it was)."""
import os
import tempfile

from ..train import CHECKPOINT, INTERRUPTED


def run_folder_problem(path, hint):
    """None if `path` holds a run's checkpoint, else what is wrong with it (and what to do: `hint`)."""
    if not os.path.exists(path):
        return f"no run folder at {path} ({hint})"
    if not os.path.isdir(path):
        return f"{path} is a file, not a run folder (give the folder that holds {CHECKPOINT})"
    if os.path.exists(os.path.join(path, CHECKPOINT)):
        return None
    if os.path.exists(os.path.join(path, INTERRUPTED)):
        return (f"{path} has no {CHECKPOINT}, only {INTERRUPTED}: the run was stopped during its first epoch "
                f"({hint})")
    return f"{path} has no {CHECKPOINT} ({hint})"


def image_folder_problem(path):
    """None if `path` can be read as an image folder (a sub-folder per class, two classes at least, and
    Pillow installed to decode them), else what is wrong."""
    from .. import data

    if not os.path.exists(path):
        return f"no folder at {path}"
    if not os.path.isdir(path):
        return f"{path} is a file, not a folder of class sub-folders"
    classes = data.class_folders(path)
    if not classes:
        return f"{path} has no class sub-folders (put each class's PNG or JPEG images in a sub-folder named after it)"
    if len(classes) < 2:
        return f"{path} has one class sub-folder ({classes[0]}); a classifier needs two at least"
    try:
        data._pillow()
    except ImportError as exc:
        return str(exc)
    return None


def folder_problem(path):
    """None if files can be written into the folder `path` (which may not exist yet), else why not. Tried for
    real (os.access says yes to root even on a read-only file system), and undone: a folder this creates
    is removed again, with any parents it created."""
    if os.path.exists(path) and not os.path.isdir(path):
        return f"{path} is a file, not a folder"
    created, folder = [], os.path.abspath(path)
    while not os.path.exists(folder):
        created.append(folder)
        folder = os.path.dirname(folder)
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        return f"cannot write into {path} ({exc.strerror or exc})"
    finally:
        for folder in created:  # the deepest first; rmdir never removes a folder that holds anything
            try:
                os.rmdir(folder)
            except OSError:
                break
    return None


def folder_data(config, device, train_limit=None, limit_batches=None):
    """(training loader, held-out loader, ImageFolder) of a run on the image folder config.data_dir (a
    RunConfig): the images read at the run's input size and split as (val_split, seed) say, so a resumed run
    and `evaluate` see the same held-out images. A folder whose classes differ from the run's is refused."""
    from .. import data

    if not os.path.isdir(config.data_dir):
        raise ValueError(f"the run's image folder {config.data_dir} is gone: give its new place with --data-dir")
    folder = data.ImageFolder(config.data_dir, size=config.resize)
    if config.classes and folder.classes != list(config.classes):
        raise ValueError(f"{config.data_dir} holds the classes {', '.join(folder.classes)}; the run was trained "
                         f"on {', '.join(config.classes)}")
    (train_x, train_y), held_out = data.split(folder, config.val_split, config.seed)
    if train_limit:
        train_x, train_y = train_x[:train_limit], train_y[:train_limit]
    common = dict(device=device, seed=config.seed, limit_batches=limit_batches)
    return (data.DataLoader((train_x, train_y), config.batch_size, shuffle=True, **common),
            data.DataLoader(held_out, config.batch_size, **common), folder)
