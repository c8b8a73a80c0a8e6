"""`python tests/stop_at.py PHASE[@EPOCH] ARGS...` runs `minivgg ARGS...` and sends itself SIGINT, as a Ctrl-C
would, when PHASE begins: 'step', 'test' or 'checkpoint' of training (of epoch EPOCH only, if given; epochs
count from 1), or 'evaluate' (when `minivgg evaluate` starts predicting). For the tests of Ctrl-C."""
import os
import signal
import sys

from minivgg import cli, cpu, evaluation, train


def interrupt():
    os.kill(os.getpid(), signal.SIGINT)


def main(when, *args):
    cpu.restart_with_blas_settings()  # the settings `minivgg train` runs with, so the numbers are its own
    phase, _, epoch = when.partition("@")
    if phase == "evaluate":
        predict = evaluation.predict

        def predicting(*a, **k):
            interrupt()
            return predict(*a, **k)
        evaluation.predict = predicting
    else:
        fit = train.fit

        def stop(now, at):
            if now == phase and (not epoch or int(epoch) == at):
                interrupt()

        def fitting(*a, callbacks=(), **k):
            return fit(*a, callbacks=(*callbacks, stop), **k)
        train.fit = fitting
    return cli.main(list(args))


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
