"""Argument checks shared by layers, models and data loaders. Each raises TypeError (wrong type) or
ValueError (wrong value) with a message naming the caller, the argument, its value and what is allowed:
`Conv2d: kernel_size must be a positive int or pair, got 0`."""
import math
import numbers


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _int_kind(minimum):
    return {0: "a non-negative int", 1: "a positive int"}.get(minimum, f"an int >= {minimum}")


def _check(owner, name, value, type_ok, value_ok, allowed):
    if not type_ok:
        raise TypeError(f"{owner}: {name} must be {allowed}, got {value!r}")
    if not value_ok():  # a callable: only evaluated once the type is right
        raise ValueError(f"{owner}: {name} must be {allowed}, got {value!r}")


def int_at_least(owner, name, value, minimum=1, none_ok=False):
    """`value` as an int, if it is an int >= minimum (or None, when `none_ok`)."""
    if value is None and none_ok:
        return None
    allowed = _int_kind(minimum)
    _check(owner, name, value, _is_int(value), lambda: value >= minimum, allowed)
    return int(value)


def int_pair(owner, name, value, minimum=1):
    """(int, int) from an int or a pair of ints, each >= minimum."""
    allowed = f"{_int_kind(minimum)} or pair"
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    _check(owner, name, value, all(map(_is_int, pair)), lambda: len(pair) == 2 and min(pair) >= minimum, allowed)
    return int(pair[0]), int(pair[1])


def number_between(owner, name, value, low=-math.inf, high=math.inf, closed=True):
    """`value`, if it is a number in [low, high] (`closed`) or in (low, high); NaN is refused."""
    if high == math.inf:
        allowed = f"a number {'>=' if closed else '>'} {low}"
    else:
        allowed = f"a number between {low} and {high}{'' if closed else ' (both excluded)'}"
    inside = (lambda: low <= value <= high) if closed else (lambda: low < value < high)
    _check(owner, name, value, _is_number(value), inside, allowed)
    return value
