"""The `minivgg` command: `minivgg train`, `minivgg summary`, `minivgg evaluate`, `minivgg inspect`."""
import argparse
import sys


def build_parser():
    parser = argparse.ArgumentParser(prog="minivgg", description="VGG from scratch on NumPy/CuPy.")
    sub = parser.add_subparsers(dest="command")
    summary = sub.add_parser("summary", help="print the per-block output shapes and parameter counts")
    summary.add_argument("--arch", default="vgg11")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    print(f"{args.command}: not available yet", file=sys.stderr)
    return 1
