"""The file system of the `minivgg` command: is a folder a run, an image folder, writable; and the loaders of a
run trained on an image folder (its own images, split as it was)."""
import os
import tempfile
import time

from ..runs import CHECKPOINT, INTERRUPTED


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
        data.require_pillow()
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


def folder_data(config, device, print_fn=print):
    """(training loader, held-out loader, ImageFolder) of a run on the image folder config.data_dir (a
    RunConfig): the images read at the run's input size. A new run draws the split from (val_split, seed) and
    records it by file name in config.train_files and config.held_out_files; a resumed run and `evaluate` use
    those lists, and say so when images were added or removed since. A folder whose classes differ from the
    run's is refused."""
    from .. import data

    if not os.path.isdir(config.data_dir):
        raise ValueError(f"the run's image folder {config.data_dir} is gone: give its new place with --data-dir")
    folder = data.ImageFolder(config.data_dir, size=config.resize)
    if config.classes and folder.classes != list(config.classes):
        raise ValueError(f"{config.data_dir} holds the classes {', '.join(folder.classes)}; the run was trained "
                         f"on {', '.join(config.classes)}")
    names = [os.path.relpath(path, folder.root).replace(os.sep, "/") for path, _ in folder.samples]
    if config.held_out_files is None:  # split the file indices as data.split splits the images
        import numpy as np

        if config.classes:  # a run's config, from before runs recorded their split
            print_fn(f"note: the run recorded no list of its held-out images: they are drawn again from its seed, "
                     f"which gives the same ones only if {config.data_dir} is unchanged since training")

        (keep, _), (out, _) = data.split((np.arange(len(names)), folder.labels), config.val_split, config.seed)
        config.train_files, config.held_out_files = [names[i] for i in keep], [names[i] for i in out]
    (train_x, train_y), held_out = recorded_split(folder, names, config, print_fn)
    if config.train_limit:
        train_x, train_y = train_x[:config.train_limit], train_y[:config.train_limit]
    common = dict(device=device, seed=config.seed, limit_batches=config.limit_batches)
    return (data.DataLoader((train_x, train_y), config.batch_size, shuffle=True, **common),
            data.DataLoader(held_out, config.batch_size, **common), folder)


def recorded_split(folder, names, config, print_fn=print):
    """((training images, labels), (held-out images, labels)) of the files the run recorded; files added
    since are left out and missing ones noted, in one line."""
    index = {name: i for i, name in enumerate(names)}
    train = [index[n] for n in config.train_files if n in index]
    held = [index[n] for n in config.held_out_files if n in index]
    added = len(names) - len(train) - len(held)
    gone_train, gone_held = len(config.train_files) - len(train), len(config.held_out_files) - len(held)
    parts = []
    if added:
        parts.append(f"{added} image{'s' if added > 1 else ''} added to {config.data_dir} since training "
                     f"{'are' if added > 1 else 'is'} left out")
    for count, what in ((gone_held, "held-out"), (gone_train, "training")):
        if count:
            parts.append(f"{count} {what} image{'s are' if count > 1 else ' is'} missing")
    if parts:
        print_fn("note: " + "; ".join(parts))
    if not held:
        raise ValueError(f"none of the run's {len(config.held_out_files)} held-out images is left in "
                         f"{config.data_dir}")
    return (folder.images[train], folder.labels[train]), (folder.images[held], folder.labels[held])


# ---- a run folder held while a run trains into it ---------------------------------------------------------
RUN_FILES = (CHECKPOINT, INTERRUPTED, "history.json")  # a folder holding any of these holds a run
REPLACED = (*RUN_FILES, "training.png", "gradients.png", "confusion.png")  # what --overwrite removes
LOCK = ".lock"


def held_run(path):
    """The files of `path` that make it a run folder (empty if none, or if it is no folder)."""
    return [name for name in RUN_FILES if os.path.exists(os.path.join(path, name))]


def taken_message(path):
    found = ", ".join(held_run(path))
    return (f"{path} already holds a run ({found}): continue it with --resume {path}, give a fresh --out, or add "
            f"--overwrite to replace it")


def new_run_path(base="runs"):
    """A new folder runs/<date-time>, created now (os.mkdir is atomic: two runs started in the same second get
    <date-time> and <date-time>-2)."""
    os.makedirs(base, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 10_000):
        path = os.path.join(base, stamp if n == 1 else f"{stamp}-{n}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise OSError(f"cannot create a new run folder in {base}: too many named {stamp}-N")


def sweep_temporary(path):
    """Remove the temporary files a stopped write left in the run folder `path` (.tmp-*.npz of save, *.tmp of
    history.json and training.png); returns how many."""
    removed = 0
    for name in os.listdir(path) if os.path.isdir(path) else []:
        if name.startswith(".tmp-") or name.endswith((".tmp", ".tmp.png")):
            try:
                os.remove(os.path.join(path, name))
                removed += 1
            except FileNotFoundError:
                pass
    return removed


class RunClaim:
    """A run folder held by this process: RUN/.lock (created with O_EXCL) holds its pid, so a second `minivgg
    train` into the same folder stops while the first runs; a lock whose process is gone is taken over.
    `release` removes the lock, any temporary file, and the folder itself if this created it and it is empty."""

    def __init__(self, path, created=False):
        self.path, self.created, self.held = path, created, False

    @property
    def lock(self):
        return os.path.join(self.path, LOCK)

    def acquire(self, print_fn=print):
        if not os.path.isdir(self.path):
            os.makedirs(self.path)
            self.created = True
        for _ in range(3):
            try:
                fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_stale(print_fn)
                continue
            except OSError as exc:
                raise OSError(f"cannot write {self.lock}: {exc.strerror or exc}") from None
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            self.held = True
            if sweep_temporary(self.path):
                print_fn(f"note: removed the temporary files a stopped write left in {self.path}")
            return self
        raise RuntimeError(f"cannot lock {self.path}: {self.lock} keeps reappearing; is another run starting?")

    def _take_over_stale(self, print_fn):
        pid = _lock_owner(self.lock)
        if pid == 0 and not os.path.exists(self.lock):
            return  # released meanwhile
        if pid is None or _alive(pid):
            who = f"process {pid}" if pid else "a process starting now"
            raise RuntimeError(f"{self.path} is in use by another minivgg train ({who}): wait for it to end, or "
                               f"train into another --out")
        print_fn(f"note: {self.lock} was left by process {pid}, which is no longer running; taking the run "
                 f"folder over")
        try:
            os.remove(self.lock)
        except FileNotFoundError:
            pass

    def release(self):
        if not self.held:
            return
        self.held = False
        sweep_temporary(self.path)
        try:
            os.remove(self.lock)
        except FileNotFoundError:
            pass
        if self.created:
            try:
                os.rmdir(self.path)  # only when empty: a run that failed before its first file leaves nothing
            except OSError:
                pass


def _lock_owner(lock):
    """The pid in a lock file; None while it is being written (young and empty)."""
    try:
        with open(lock) as f:
            text = f.read().strip()
        age = time.time() - os.path.getmtime(lock)
    except FileNotFoundError:
        return 0  # removed meanwhile: try again
    if text.isdigit():
        return int(text)
    return None if age < 10 else 0


def _alive(pid):
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_run_folder(args, out, print_fn=print):
    """The run folder of `minivgg train`, held (RunClaim): --resume's, --out's (refused if it holds a run,
    unless --overwrite, which removes the old run's files), or a new runs/<date-time>."""
    if args.resume:
        return RunClaim(args.resume).acquire(print_fn)
    if out is None:
        return RunClaim(new_run_path(), created=True).acquire(print_fn)
    claim = RunClaim(out).acquire(print_fn)
    if held_run(out):
        if not args.overwrite:
            claim.release()
            raise ValueError(f"--out: {taken_message(out)}")
        for name in REPLACED:
            if os.path.exists(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
        print_fn(f"note: --overwrite: the earlier run in {out} is replaced")
    return claim
