"""The `minivgg` command (also `python -m minivgg`):

    minivgg train [--device cpu|cuda] [--epochs N] [--resume RUN_DIR] ...   train VGG on Fashion-MNIST
    minivgg evaluate RUN_DIR [--dense|--multi-crop] [--scales Q ...]        test accuracy, per class, confusion
    minivgg summary [--arch vgg11] [--ratio 1] [--resize 224]               D2L's shape/parameter table
    minivgg inspect [--arch d2l] [--run RUN_DIR]                             per-layer activations and gradients
    minivgg doctor [--device cuda:N]                                         is the GPU path usable here, and right

One module per command (train.py, evaluate.py, summary.py, inspect.py, doctor.py); the options in parser.py,
their checks in checks.py, the file-system probes and a run's image-folder loaders in folders.py.
"""
import os
import sys

from .. import backend
from ..recipe import build_model  # noqa: F401 (minivgg.cli.build_model, as callers know it)
from .checks import check_args, device_of
from .stops import exit_status, signal_words, stops_as_interrupts
from .doctor import cmd_doctor
from .evaluate import cmd_evaluate
from .inspect import cmd_inspect
from .parser import build_parser
from .summary import cmd_summary
from .train import cmd_train

COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "summary": cmd_summary, "inspect": cmd_inspect,
            "doctor": cmd_doctor}


def main(argv=None):
    """Parse and check the command line (a mistake ends in argparse's usage error, exit code 2, before
    anything runs), then run the command; an error while it runs is one line on stderr, exit code 1. SIGTERM
    and SIGHUP stop it as Ctrl-C does (a run saves what it has), with exit code 128 + the signal's number."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    check_args(parser.commands[args.command], args)
    if argv is None and args.command == "train" and args.device == "cpu":  # the command line, not a test's call
        from .. import cpu

        cpu.restart_with_blas_settings(["-m", "minivgg", *sys.argv[1:]])
    try:
        with backend.use_device(device_of(args)), stops_as_interrupts():  # CuPy computes on its current device
            return COMMANDS[args.command](args)
    except (RuntimeError, ValueError, OSError, KeyError, MemoryError, ImportError) as exc:
        if os.environ.get("MINIVGG_DEBUG"):
            raise
        hint = " (out of memory: lower --batch-size or --resize)" if isinstance(exc, MemoryError) else ""
        print(f"minivgg {args.command}: error: {exc}{hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print(f"minivgg {args.command}: interrupted{signal_words(exc)}", file=sys.stderr)
        return exit_status(exc)
