"""What every lesson shares: quick mode, the output folder, and `claim`, which checks what it prints."""
import os
import sys

from minivgg.plotting import pyplot  # noqa: F401  (matplotlib drawing to files, for the lessons' figures)

QUICK = "--quick" in sys.argv or os.environ.get("MINIVGG_QUICK") == "1"
# MINIVGG_LESSON_OUTPUT: another folder for the figures (the tests' altered copies of lessons write there).
OUTPUT = os.environ.get("MINIVGG_LESSON_OUTPUT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "output")


def output(name):
    """Path of a figure or file under lessons/output/ (created on demand, git-ignored)."""
    os.makedirs(OUTPUT, exist_ok=True)
    return os.path.join(OUTPUT, name)


def save_figure(fig, name, dpi=90, label="figure", rect=(0, 0, 1, 1)):
    """Lay out `fig` (within `rect`, leaving room for a figure legend), write it to lessons/output/`name`,
    close it and print where it went."""
    fig.tight_layout(rect=rect)
    fig.savefig(output(name), dpi=dpi)
    pyplot().close(fig)
    print(f"  {label}: {output(name)}")


class ClaimFailed(Exception):
    """A lesson's claim was false. Raised, not asserted: `python -O` strips asserts, never a raise."""


def claim(condition, sentence):
    """State a fact in plain words, and stop the lesson if it is not true."""
    if not condition:
        raise ClaimFailed("the lesson's claim failed: " + sentence)
    print("  \u2713 " + sentence)


def section(title):
    print(f"\n== {title} ==")


def exercises(*items):
    print("\nExercises")
    for i, item in enumerate(items, 1):
        print(f"  {i}. {item}")


def notice(*lines):
    """After a lesson's results: two or three things to notice, in plain words."""
    print("\nWhat to notice")
    for line in lines:
        print("  - " + line)
