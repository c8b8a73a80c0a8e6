"""Seeded random generators: one per device, and the seed words that keep a run's random streams apart.

A seed makes a run repeatable bit for bit. Every stream a training run draws from is seeded with
[seed, epoch, STREAM, ...], except the loader's order, which takes [seed, epoch]."""
import numpy as np

from . import cuda
from .devices import canonical_device

# The third seed word of each stream. They differ, so that no two streams draw the same numbers.
FLIP_STREAM = 1  # the loader's horizontal flips: [seed, epoch, FLIP_STREAM]
AUGMENT_STREAM = 2  # the loader's augmentation of batch b: [seed, epoch, AUGMENT_STREAM, b]
STEP_STREAM = 3  # a training step's generators (dropout's masks): [seed, epoch, STEP_STREAM, step]

_generators = {}  # device -> its generator, made on first use
_seed = None


def stream_rng(seed, epoch, stream, *more):
    """A NumPy generator for one stream: seeded with [seed, epoch, stream, *more] (see the words above)."""
    return np.random.default_rng([int(seed), int(epoch), stream, *(int(m) for m in more)])


def get_generator(device="cpu"):
    """The random generator of `device` (NumPy's or CuPy's `Generator`), created on first use from the seed
    of `manual_seed` or, inside fit, of `derive_generators`."""
    device = canonical_device(device)
    if device not in _generators:
        if device == "cpu":
            _generators[device] = np.random.default_rng(_seed)
        else:
            with cuda.use_device(device):  # a CuPy generator draws on the device it was made on
                _generators[device] = cuda.require_cupy().random.default_rng(_seed)
    return _generators[device]


def manual_seed(seed):
    """Seed every device's generator. Afterwards a run repeats bit for bit."""
    global _seed
    _seed = int(seed)
    _generators.clear()


def derive_generators(seed, epoch, step):
    """Give every device a generator that depends only on (seed, epoch, step) (each made on first use, so
    a step that draws nothing costs nothing). fit calls it before every step: dropout's masks then do not
    depend on what drew random numbers before (initialization, an earlier epoch, a resume), so a resumed
    run draws the masks of the run that went straight through, on every device, without checkpointing any
    generator state."""
    global _seed
    key = np.random.SeedSequence([int(seed), int(epoch), STEP_STREAM, int(step)])
    _seed = int(key.generate_state(1, np.uint64)[0])  # an int: what both NumPy and CuPy accept as a seed
    _generators.clear()


def generator_state():
    """The CPU generator's state, to store in a checkpoint."""
    return get_generator("cpu").bit_generator.state


def set_generator_state(state):
    """Put back a state from `generator_state`."""
    get_generator("cpu").bit_generator.state = state
