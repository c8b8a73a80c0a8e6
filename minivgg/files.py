"""Files written whole or not at all. Each is written to a temporary file in its own folder and renamed over
its target, so a crash never leaves half of one, and a symlink at the target is replaced, never followed.
The temporary files carry minivgg's own prefix and the writer's process id (.minivgg-tmp-<pid>-...), so
`sweep` removes what a stopped minivgg write left behind and nothing a user named."""
import os
import re
import secrets
from contextlib import contextmanager

PREFIX = ".minivgg-tmp-"
_OURS = re.compile(re.escape(PREFIX) + r"(\d+)-[0-9a-f]{8}-")


def temporary_file(path):
    """(file descriptor, name) of a new, empty temporary file beside `path`, created with O_EXCL and the
    permissions an ordinary file gets (0666 less the umask); its name ends with `path`'s own name, so
    matplotlib reads the format from it."""
    folder, name = os.path.split(os.path.abspath(path))
    while True:
        tmp = os.path.join(folder, f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{name}")
        try:
            return os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666), tmp
        except FileExistsError:
            continue


@contextmanager
def replacing(path):
    """Yield the name of a temporary file to write; on success it replaces `path` (atomically), on any
    exception (Ctrl-C included) it is removed and `path` is unchanged."""
    fd, tmp = temporary_file(path)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def write_text(path, text):
    """Write `text` to `path` whole or not at all."""
    with replacing(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def is_temporary(name):
    """Whether the file name `name` is one of minivgg's temporary files."""
    return _OURS.match(name) is not None


def sweep(folder):
    """Remove the temporary files that stopped minivgg writes left in `folder` (those of processes no longer
    running, and this process's own); returns how many. Any other file is left alone."""
    removed = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        match = _OURS.match(name)
        if not match:
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and _alive(pid):
            continue  # another minivgg process is writing it now
        try:
            os.remove(os.path.join(folder, name))
            removed += 1
        except OSError:
            pass
    return removed
