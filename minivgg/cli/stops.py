"""SIGTERM and SIGHUP (sent by `timeout`, `kill`, `docker stop`, batch schedulers, a closed SSH connection) stop a
command as Ctrl-C does: they raise `Stopped`, a KeyboardInterrupt, so a training run saves what it has and
prints the command that resumes; the exit code is 128 + the signal's number (143, 129), as a shell reports."""
import os
import signal
import sys
import threading
from contextlib import contextmanager

STOPS = (signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """A stop signal other than SIGINT, raised where the program was, as Ctrl-C is."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum, frame):
    for each in STOPS:  # a second signal must not cut short the save the first one started
        signal.signal(each, signal.SIG_IGN)
    if signum == signal.SIGHUP:
        _leave_the_terminal()
    raise Stopped(signum)


def _leave_the_terminal():
    """SIGHUP means the terminal is gone, and every write to it fails (EIO): what would have gone there
    goes nowhere, so the run still saves and exits 129 instead of failing on its own messages. Output
    redirected to a file (nohup, `> log`) is kept."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        try:
            if stream is not None and stream.isatty():
                setattr(sys, name, open(os.devnull, "w"))
        except (OSError, ValueError):  # closed already
            setattr(sys, name, open(os.devnull, "w"))


@contextmanager
def stops_as_interrupts():
    """Within: SIGTERM and SIGHUP raise Stopped (in the main thread only: Python delivers signals there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {each: signal.getsignal(each) for each in STOPS}
    for each, handler in before.items():
        if handler is not signal.SIG_IGN:  # ignored on purpose (nohup): stays ignored
            signal.signal(each, _stop)
    try:
        yield
    finally:
        for each, handler in before.items():
            signal.signal(each, handler)


def exit_status(exc):
    """128 + the signal's number: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""
    return 128 + getattr(exc, "signum", signal.SIGINT)


def signal_words(exc):
    """' by SIGTERM' for a stop signal, '' for Ctrl-C."""
    return f" by {signal.Signals(exc.signum).name}" if isinstance(exc, Stopped) else ""
