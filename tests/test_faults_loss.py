"""Nothing a user has is lost: the temporary-file sweep removes only what minivgg wrote, --overwrite keeps the
earlier run until the new one has saved an epoch, two processes never both hold a run folder (a kernel lock,
never taken over by hand), SIGTERM and SIGHUP save as Ctrl-C does, and a stop while matplotlib loads or
draws costs no epoch and prints no traceback. Each case runs the command in a subprocess."""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import minivgg as mv
from minivgg import data, files, train
from minivgg.cli import folders

from cli_runs import TINY, finished, run  # noqa: F401 (fixtures)
from cli_runs import minivgg as _minivgg
from cli_runs import sums as _sums

pytestmark = pytest.mark.skipif(not os.path.isdir(data.DEBIAN_DIR),
                                reason="install dataset-fashion-mnist (Debian) for real data")
def _script(code, *args, cwd):
    """Run `code` (which ends by calling the CLI with sys.argv[1:]) in a fresh interpreter."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], check=False,
                          capture_output=True, text=True, cwd=cwd, timeout=600)


RUN_CLI = "import sys\nfrom minivgg import cli\nsys.exit(cli.main(sys.argv[1:]))\n"


def _ours(folder):
    return [name for name in os.listdir(folder) if files.is_temporary(name) or name == folders.LOCK]


# ---- 1. the sweep removes minivgg's own temporary files only ------------------------------------------------
def test_the_sweep_leaves_the_users_files_alone(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    users = {"report.tmp": "draft", ".tmp-notes.txt": "k", "figure.tmp.png": "p", ".tmp-x.npz": "mine",
             "history.json.tmp": "h", f"{files.PREFIX}notes.txt": "a name that only looks like ours"}
    for name, text in users.items():
        (folder / name).write_text(text)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = folder / f"{files.PREFIX}{dead.pid}-0a1b2c3d-checkpoint.npz"  # what a killed save leaves
    left.write_bytes(b"half a checkpoint")
    result = _minivgg("train", *TINY, "--epochs", "1", "--out", folder, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"note: removed the temporary files a stopped minivgg write left in {folder}" in result.stdout
    assert not left.exists() and _ours(folder) == []
    for name, text in users.items():
        assert (folder / name).read_text() == text


def test_the_sweep_keeps_a_live_writers_file(tmp_path):
    live = tmp_path / f"{files.PREFIX}{os.getppid()}-0a1b2c3d-confusion.png"  # a running process's write
    live.write_bytes(b"being written")
    mine = tmp_path / f"{files.PREFIX}{os.getpid()}-0a1b2c3d-training.png"
    mine.write_bytes(b"left by this process")
    assert files.sweep(tmp_path) == 1 and live.exists() and not mine.exists()


def test_every_write_uses_a_name_of_minivgg_s_own(tmp_path, monkeypatch):
    written = []
    real_replace = os.replace

    def replace(src, dst):
        written.append(os.path.basename(src))
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    mv.save({"w": np.zeros(2)}, tmp_path / "a.npz")
    files.write_text(str(tmp_path / "b.json"), "{}")
    assert len(written) == 2 and all(map(files.is_temporary, written))
    assert sorted(os.listdir(tmp_path)) == ["a.npz", "b.json"]


# ---- 2. --overwrite keeps the earlier run until the new one has saved an epoch --------------------------------
def test_overwrite_that_diverges_keeps_the_earlier_run(run, tmp_path):
    folder, before = run
    result = _minivgg("train", *TINY, "--epochs", "1", "--lr", "1e30", "--out", folder, "--overwrite", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "the loss became" in result.stderr
    assert f"note: this run saved nothing: the earlier run is back in {folder}" in result.stderr
    assert _sums(folder) == before and sorted(os.listdir(folder)) == sorted(before)


def test_overwrite_stopped_in_its_first_epoch_keeps_the_earlier_run_aside(run, tmp_path):
    folder, before = run
    code = """
        import os, signal, sys
        from minivgg import cli, train
        real = train.train_step
        def step(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the new run's first step
            return real(*args, **kwargs)
        train.train_step = step
        sys.exit(cli.main(sys.argv[1:]))
    """
    result = _script(code, "train", *TINY, "--epochs", "1", "--seed", "5", "--out", folder, "--overwrite",
                     cwd=tmp_path)
    assert result.returncode == 130 and "Traceback" not in result.stderr
    backup = folder / "previous-run"
    assert f"note: the earlier run of {folder} is kept in {backup}" in result.stderr
    assert _sums(backup) == before  # every file of the earlier run, unchanged
    assert mv.load(folder / train.CHECKPOINT)["config"]["seed"] == 5  # the new run's start, resumable


def test_overwrite_killed_keeps_the_earlier_run_aside(run, tmp_path):
    folder, before = run
    code = """
        import os, signal, sys
        from minivgg import cli, train
        def step(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        train.train_step = step
        sys.exit(cli.main(sys.argv[1:]))
    """
    result = _script(code, "train", *TINY, "--epochs", "1", "--out", folder, "--overwrite", cwd=tmp_path)
    assert result.returncode == -signal.SIGKILL
    assert f"is moved to {folder / 'previous-run'}" in result.stdout
    assert _sums(folder / "previous-run") == before


# ---- 3, 4. a kernel lock: never held twice, never stale ---------------------------------------------------
HOLDER = """
import sys
from minivgg.cli.folders import RunClaim
print("ready", flush=True)
for line in sys.stdin:
    command, path = line.split()
    if command == "take":
        try:
            claim = RunClaim(path).acquire(print_fn=lambda *a: None)
            print("held", flush=True)
        except RuntimeError:
            claim = None
            print("busy", flush=True)
    elif command == "release":
        if claim is not None:
            claim.release()
        print("released", flush=True)
"""


def test_two_processes_never_both_hold_a_folder_with_a_stale_lock(tmp_path):
    holders = [subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True) for _ in range(2)]
    try:
        assert [h.stdout.readline() for h in holders] == ["ready\n"] * 2
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        for trial in range(1000):
            folder = tmp_path / f"run{trial}"
            folder.mkdir()
            (folder / folders.LOCK).write_text(f"{dead.pid}\n")  # left by a process that is gone
            for h in holders:  # both asked at once: each reads its line as soon as it is written
                h.stdin.write(f"take {folder}\n")
                h.stdin.flush()
            answers = sorted(h.stdout.readline().strip() for h in holders)
            assert answers == ["busy", "held"], f"trial {trial}: {answers}"
            for h in holders:
                h.stdin.write(f"release {folder}\n")
                h.stdin.flush()
            assert [h.stdout.readline() for h in holders] == ["released\n"] * 2
            assert not (folder / folders.LOCK).exists()
    finally:
        for h in holders:
            h.stdin.close()
            h.wait(timeout=60)


def test_a_lock_naming_a_live_process_that_holds_nothing_is_taken(run, tmp_path):
    folder, before = run
    (folder / folders.LOCK).write_text("1\n")  # pid 1 is alive, but holds no lock on the file
    result = _minivgg("train", "--resume", folder, "--epochs", "2", "--no-progress", "--data", data.DEBIAN_DIR,
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert mv.load(folder / train.CHECKPOINT)["epoch"] == 2 and _ours(folder) == []


def test_a_killed_holder_leaves_no_lock_behind(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline() == "ready\n"
    holder.stdin.write(f"take {folder}\n")
    holder.stdin.flush()
    assert holder.stdout.readline() == "held\n"
    claim = folders.RunClaim(str(folder))
    with pytest.raises(RuntimeError, match=f"in use by another minivgg train \\(process {holder.pid}\\)"):
        claim.acquire()
    holder.kill()
    holder.wait()
    claim.acquire(print_fn=lambda *a: None)  # the kernel dropped the dead holder's lock
    assert (folder / folders.LOCK).read_text() == f"{os.getpid()}\n"
    claim.release()
    assert not (folder / folders.LOCK).exists()


def test_a_lock_that_is_a_symbolic_link_is_never_written_through(tmp_path):
    folder, mine = tmp_path / "run", tmp_path / "notes.txt"
    folder.mkdir()
    mine.write_text("mine\n")
    (folder / folders.LOCK).symlink_to(mine)
    with pytest.raises(OSError, match="is a symbolic link, not minivgg's lock file"):
        folders.RunClaim(str(folder)).acquire(print_fn=lambda *a: None)
    assert mine.read_text() == "mine\n"


def test_overwrite_that_cannot_move_the_earlier_run_puts_it_back(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("checkpoint.npz", "history.json", "training.png"):
        (folder / name).write_text(name)
    before = _sums(folder)
    real = os.replace
    moved = []

    def replace(src, dst):  # the second move fails, as on a full disk or a vanished file
        moved.append(src)
        if len(moved) == 2:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(folders.os, "replace", replace)
    args = type("Args", (), {"resume": None, "overwrite": True})()
    with pytest.raises(OSError):
        folders.claim_run_folder(args, str(folder), print_fn=lambda *a: None)
    monkeypatch.setattr(folders.os, "replace", real)
    assert _sums(folder) == before and sorted(os.listdir(folder)) == sorted(before)  # no backup, no lock


def test_an_unreadable_interrupted_npz_is_left_alone(tmp_path):
    from minivgg.runs import RunFolder

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / train.INTERRUPTED).write_bytes(b"not a checkpoint")  # damaged: its epoch cannot be known
    net = mv.nn.Linear(2, 2)
    state = train.training_state(net, mv.optim.SGD(net.parameters(), lr=0.1), None, 1,
                                 {"epochs": [], "points": []}, None)
    RunFolder(str(folder)).save_state(state)
    assert (folder / train.INTERRUPTED).read_bytes() == b"not a checkpoint"


# ---- 5. SIGTERM and SIGHUP save as Ctrl-C does ----------------------------------------------------------------
SIGNAL_IN_SAVE = """
    import os, signal, sys
    from minivgg import cli, serialization
    real, sent = serialization.np.savez, []
    def savez(*args, **kwargs):
        if not sent:  # the stop comes while the first checkpoint is being written
            sent.append(1)
            os.kill(os.getpid(), signal.{name})
        return real(*args, **kwargs)
    serialization.np.savez = savez
    sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("name, status", [("SIGTERM", 143), ("SIGHUP", 129)])
def test_a_stop_signal_in_the_first_checkpoint_write_saves_the_epoch(finished, tmp_path, name, status):
    folder = tmp_path / "run"
    result = _script(SIGNAL_IN_SAVE.replace("{name}", name), "train", *TINY, "--epochs", "1", "--out", folder,
                     cwd=tmp_path)
    assert result.returncode == status and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"interrupted by {name}: resume with: minivgg train --resume {folder}"]
    assert f"interrupted after the training of epoch 1: it is saved in {folder / train.CHECKPOINT}" in result.stdout
    assert mv.load(folder / train.CHECKPOINT)["epoch"] == 1 and _ours(folder) == []
    result = _minivgg("train", "--resume", folder, "--epochs", "2", "--no-progress", "--data", data.DEBIAN_DIR,
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "resuming after epoch 1" in result.stdout


def test_sigterm_from_outside_during_training_stops_cleanly(tmp_path):
    folder = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "minivgg", "train", *TINY, "--limit-batches", "16",
                             "--train-limit", "1024", "--epochs", "3", "--out", str(folder)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    banner = proc.stdout.readline()  # printed once the folder is held, just before training starts
    assert banner.startswith("training d2l"), banner + proc.stderr.read()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 143 and "Traceback" not in err, err
    assert err.splitlines()[-1] in (f"interrupted by SIGTERM: resume with: minivgg train --resume {folder}",
                                    "minivgg train: interrupted by SIGTERM before the first checkpoint was written")
    assert _ours(folder) == [] if folder.exists() else True


def test_a_nohup_run_keeps_ignoring_sighup():
    from minivgg.cli.stops import stops_as_interrupts

    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with stops_as_interrupts():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)


# ---- 6. a stop while matplotlib loads or draws the first plot -----------------------------------------------
def test_ctrl_c_while_matplotlib_loads_is_no_traceback(tmp_path):
    folder = tmp_path / "run"
    code = """
        import importlib.abc, sys
        class Stop(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "matplotlib.rcsetup":  # halfway through matplotlib's own __init__
                    sys.meta_path.remove(self)
                    raise KeyboardInterrupt
        sys.meta_path.insert(0, Stop())
        from minivgg import cli
        sys.exit(cli.main(sys.argv[1:]))
    """
    result = _script(code, "train", *TINY, "--epochs", "1", "--out", folder, cwd=tmp_path)
    assert result.returncode == 130 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1
    if (folder / train.CHECKPOINT).exists():
        assert result.stderr == f"interrupted: resume with: minivgg train --resume {folder}\n"


def test_ctrl_c_while_the_first_plot_is_drawn_keeps_the_epoch_and_draws_it(tmp_path):
    folder = tmp_path / "run"
    code = """
        import sys
        from matplotlib.figure import Figure
        from minivgg import cli
        real, done = Figure.savefig, []
        def savefig(self, *args, **kwargs):
            if not done:
                done.append(1)
                raise KeyboardInterrupt
            return real(self, *args, **kwargs)
        Figure.savefig = savefig
        sys.exit(cli.main(sys.argv[1:]))
    """
    result = _script(code, "train", *TINY, "--epochs", "1", "--out", folder, cwd=tmp_path)
    assert result.returncode == 130 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr == f"interrupted: resume with: minivgg train --resume {folder}\n"
    assert mv.load(folder / train.CHECKPOINT)["epoch"] == 1
    assert (folder / "training.png").read_bytes()[:4] == b"\x89PNG" and _ours(folder) == []


def test_sighup_leaves_a_hung_up_terminal_instead_of_failing_on_it(monkeypatch):
    from minivgg.cli.stops import Stopped, stops_as_interrupts

    class HungUp:
        def isatty(self):
            return True

        def write(self, text):
            raise OSError(5, "Input/output error")

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stdout", HungUp())
    monkeypatch.setattr(sys, "stderr", HungUp())
    with pytest.raises(Stopped) as info, stops_as_interrupts():
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(1000):  # the handler runs at the next instruction
            pass
    print("interrupted by SIGHUP: resume with: ...")  # goes nowhere, without an error
    print("minivgg train: interrupted", file=sys.stderr)
    assert info.value.signum == signal.SIGHUP


def test_a_stop_between_the_banner_and_the_first_step_says_what_a_stop_in_training_says(tmp_path, monkeypatch,
                                                                                          capsys):
    from minivgg import cli
    from minivgg.cli import train as train_command

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_command, "print_notes", stop)
    code = cli.main(["train", *TINY, "--epochs", "1", "--out", str(tmp_path / "run")])
    assert code == 130
    assert capsys.readouterr().err.splitlines()[-1] == ("minivgg train: interrupted before the first checkpoint "
                                                         "was written")
