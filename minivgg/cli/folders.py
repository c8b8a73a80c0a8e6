"""The file system of the `minivgg` command: is a folder a run, an image folder, writable; and the loaders of a
run trained on an image folder (its own images, split as it was)."""
import errno
import fcntl
import os
import shutil
import sys
import tempfile
import time

from .. import files
from ..runs import CHECKPOINT, INTERRUPTED, LOCK, RUN_FILES, saved_epochs


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
REPLACED = (*RUN_FILES, "training.png", "gradients.png", "confusion.png")  # what --overwrite moves aside


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


class RunClaim:
    """A run folder held by this process: an exclusive flock on RUN/.lock, which holds its pid, so a second
    `minivgg train` into the same folder stops while the first runs. The kernel drops the lock when the
    process ends, however it ends, so a lock left behind is never mistaken for a live one. `release` removes
    the lock, temporary files of stopped minivgg writes, and the folder itself if this created it and it is
    empty."""

    def __init__(self, path, created=False):
        self.path, self.created, self.held, self._fd = path, created, False, None
        self.backup = None  # where --overwrite moved the earlier run

    @property
    def lock(self):
        return os.path.join(self.path, LOCK)

    def acquire(self, print_fn=print):
        if not os.path.isdir(self.path):
            os.makedirs(self.path)
            self.created = True
        while True:
            try:
                fd = os.open(self.lock, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW, 0o644)  # never write through a link
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise OSError(f"{self.lock} is a symbolic link, not minivgg's lock file: remove it") from None
                raise OSError(f"cannot write {self.lock}: {exc.strerror or exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RuntimeError(self._in_use()) from None
            # the holder before us may have removed the file between our open and our lock: ours must be
            # the file that is at the path now, or a third process could lock that one too
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.lock))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd, self.held = fd, True
        if files.sweep(self.path):
            print_fn(f"note: removed the temporary files a stopped minivgg write left in {self.path}")
        return self

    def _in_use(self):
        try:
            with open(self.lock) as f:
                pid = f.read().strip()
        except OSError:
            pid = ""
        who = f" (process {pid})" if pid.isdigit() else ""
        return (f"{self.path} is in use by another minivgg train{who}: wait for it to end, or train into "
                f"another --out")

    def release(self):
        if not self.held:
            return
        self.held = False
        try:
            files.sweep(self.path)
            if self.backup:
                self._settle_backup()
        finally:  # the lock goes whatever happened above
            try:
                os.remove(self.lock)  # while still locked: see acquire
            except FileNotFoundError:
                pass
            os.close(self._fd)  # drops the lock
        if self.created:
            try:
                os.rmdir(self.path)  # only when empty: a run that failed before its first file leaves nothing
            except OSError:
                pass

    def move_aside(self, names, print_fn=print):
        """--overwrite: move the earlier run's files into a sub-folder previous-run (-2, -3, ... if taken), kept
        while this run trains: removed when it ends with an epoch saved, put back if it saved nothing."""
        for n in range(1, 10_000):
            backup = os.path.join(self.path, "previous-run" if n == 1 else f"previous-run-{n}")
            try:
                os.mkdir(backup)
                break
            except FileExistsError:
                continue
        self.backup = backup  # set first: if a move fails, release() still says where the moved files are
        for name in names:
            os.replace(os.path.join(self.path, name), os.path.join(backup, name))
        print_fn(f"note: --overwrite: the earlier run in {self.path} is moved to {backup}; it is removed when "
                 f"this run ends with an epoch saved")

    def put_back(self):
        """Move the earlier run's files back from the backup folder (move_aside undone)."""
        if self.backup and os.path.isdir(self.backup):
            for name in os.listdir(self.backup):
                os.replace(os.path.join(self.backup, name), os.path.join(self.path, name))
            os.rmdir(self.backup)
        self.backup = None

    def _settle_backup(self):
        """The end of an --overwrite run: the earlier run removed if this one saved an epoch, put back if this
        one saved nothing, else (stopped in its first epoch) kept, and said where."""
        backup, checkpoint = self.backup, os.path.join(self.path, CHECKPOINT)
        if (saved_epochs(checkpoint) or 0) >= 1:
            shutil.rmtree(backup, ignore_errors=True)
        elif not any(os.path.exists(os.path.join(self.path, name)) for name in REPLACED):
            self.put_back()
            print(f"note: this run saved nothing: the earlier run is back in {self.path}", file=sys.stderr)
        else:
            print(f"note: the earlier run of {self.path} is kept in {backup}", file=sys.stderr)


def claim_run_folder(args, out, print_fn=print):
    """The run folder of `minivgg train`, held (RunClaim): --resume's, --out's (refused if it holds a run,
    unless --overwrite, which moves the earlier run aside: RunClaim.move_aside), or a new runs/<date-time>."""
    if args.resume:
        return RunClaim(args.resume).acquire(print_fn)
    if out is None:
        return RunClaim(new_run_path(), created=True).acquire(print_fn)
    claim = RunClaim(out).acquire(print_fn)
    if held_run(out):
        if not args.overwrite:
            claim.release()
            raise ValueError(f"--out: {taken_message(out)}")
        try:
            claim.move_aside([name for name in REPLACED if os.path.exists(os.path.join(out, name))], print_fn)
        except BaseException:
            try:
                claim.put_back()  # what was moved before the failure
            finally:
                claim.release()
            raise
    return claim
