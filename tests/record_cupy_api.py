"""Record what an installed CuPy provides, for the strict stand-in (tests/strict_cupy.py). Runs without a GPU.

    python -m venv /tmp/cupyenv && /tmp/cupyenv/bin/pip install cupy-cuda12x==14.2.0 numpy
    /tmp/cupyenv/bin/python tests/record_cupy_api.py > tests/cupy_api.json

It records:
- the public names of cupy, cupy.random, cupy.linalg, cupyx, cupy.ndarray, cupy.random.Generator,
  cupy.cuda.runtime and cupy.cuda.Device;
- "signatures": the parameters of every function and method minivgg can reach (cupy.* functions and
  ufuncs, cupy.ndarray methods, ufunc methods, cupy.random functions and Generator methods), so the stand-in
  refuses a keyword CuPy would refuse. A signature is a list of tokens as in a `def` line without the
  defaults, joined by ", ": "x", "axis=" (has a default), "/", "*", "*shape", "**kwargs". Most of CuPy is compiled
  (Cython), where `inspect.signature` fails; there the first line of the docstring, which Cython writes
  as the signature ("_ndarray_base.max(self, axis=None, out=None, keepdims=False) -> ..."), is parsed.
  A callable with neither is left out, and the stand-in then does not check its keywords;
- "probes": calls that real CuPy is asked to parse (on an array it never computes on, when there is no
  GPU), with whether its argument parsing refused them. The conformance test makes the same calls on the
  stand-in and expects the same answer, so the stand-in's strictness is tied to CuPy's own behaviour.
"""
import ast
import inspect
import json
import re

import numpy

import cupy
import cupyx


def public(obj):
    return sorted(n for n in dir(obj) if not n.startswith("_"))


def _tokens(args):
    """The tokens of an ast.arguments (a parsed parameter list)."""
    positional = args.posonlyargs + args.args
    first_default = len(positional) - len(args.defaults)
    tokens = []
    for i, a in enumerate(positional):
        tokens.append(a.arg + ("=" if i >= first_default else ""))
        if args.posonlyargs and i == len(args.posonlyargs) - 1:
            tokens.append("/")
    if args.vararg:
        tokens.append("*" + args.vararg.arg)
    elif args.kwonlyargs:
        tokens.append("*")
    for a, default in zip(args.kwonlyargs, args.kw_defaults):
        tokens.append(a.arg + ("=" if default is not None else ""))
    if args.kwarg:
        tokens.append("**" + args.kwarg.arg)
    return tokens


def _from_signature(func):
    """The signature inspect reads (Python functions, Cython functions compiled with binding)."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    # Printed without annotations and with None for every default, it parses as a `def` line.
    bare = [p.replace(annotation=p.empty, default=p.empty if p.default is p.empty else None)
            for p in signature.parameters.values()]
    text = str(signature.replace(parameters=bare, return_annotation=signature.empty))
    return _tokens(ast.parse(f"def f{text}: pass").body[0].args)


def _split(params):
    """Split a parameter list at its top-level commas (a default may be a tuple)."""
    parts, depth, current = [], 0, ""
    for ch in params:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [p.strip() for p in parts + [current] if p.strip()]


def _untyped(param):
    """Cython writes C types before a name ("Py_ssize_t axis1", "int axis=-1"): keep the name only."""
    name, eq, default = param.partition("=")
    words = name.split()
    return (words[-1] if words else name) + eq + default


def _from_docstring(func):
    """Cython's embedded signature: the docstring's first line `name(params) -> result`."""
    first = (getattr(func, "__doc__", None) or "").strip().splitlines()[:1]
    match = re.match(r"^[\w.]+\((.*)\)(\s*->.*)?$", first[0].strip()) if first else None
    if match is None:
        return None
    params = ", ".join(_untyped(p) for p in _split(match.group(1).replace("\\*", "*")))  # Sphinx escapes *
    try:
        return _tokens(ast.parse(f"def f({params}): pass").body[0].args)
    except SyntaxError:
        return None


def signature_tokens(func, bound=False):
    """The parameter tokens of `func`, without `self` when `bound` (a method read from its class)."""
    tokens = _from_signature(func)
    if tokens is None:
        tokens = _from_docstring(func)
    if tokens and bound and tokens[0].rstrip("=") == "self":
        tokens = tokens[1:]
        if tokens[:1] == ["/"]:
            tokens = tokens[1:]
    return tokens


def signatures():
    found = {}

    def record(name, func, bound=False):
        tokens = signature_tokens(func, bound)
        if tokens is not None:
            found[name] = ", ".join(tokens)  # one line per callable in the JSON

    for name in public(cupy):
        value = getattr(cupy, name)
        if callable(value) and not isinstance(value, type):
            record(f"cupy.{name}", value)
    for name in public(cupy.random):
        value = getattr(cupy.random, name)
        if callable(value) and not isinstance(value, type):
            record(f"cupy.random.{name}", value)
    for prefix, cls in (("cupy.ndarray", cupy.ndarray), ("cupy.ufunc", cupy.ufunc),
                        ("cupy.random.Generator", cupy.random.Generator)):
        for name in public(cls):
            value = getattr(cls, name)
            if callable(value) and not isinstance(value, (type, property)):
                record(f"{prefix}.{name}", value, bound=True)
    return dict(sorted(found.items()))


def _probe_array():
    """A float32 (2, 3) cupy.ndarray: a real one with a GPU; without one, an array over memory that is never
    touched (only argument parsing runs: any call that gets past it stops at the missing driver)."""
    try:
        return cupy.zeros((2, 3), dtype=numpy.float32)
    except cupy.cuda.runtime.CUDARuntimeError:
        memory = cupy.cuda.UnownedMemory(1 << 20, 2 * 3 * 4, None, 0)
        return cupy.ndarray((2, 3), dtype=numpy.float32, memptr=cupy.cuda.MemoryPointer(memory, 0))


# Written as the conformance test evaluates them, with `x` a float32 (2, 3) device array.
PROBES = (
    "x.max(initial=0)",
    "x.sum(where=True)",
    "x.min(initial=0)",
    "x.mean(where=True)",
    "cupy.multiply(x, x, where=True)",
    "cupy.add(x, x, order='C')",
    "x.max(axis=0, keepdims=True)",
    "x.sum(axis=(0, 1), dtype=cupy.float32)",
    "cupy.multiply(x, x, out=x, dtype=cupy.float32, casting='same_kind')",
)


def probes():
    x = _probe_array()
    answers = {}
    for call in PROBES:
        try:
            eval(call, {"cupy": cupy, "x": x})
            answers[call] = "accepted"
        except cupy.cuda.runtime.CUDARuntimeError:
            answers[call] = "accepted"  # past argument parsing, stopped by the missing GPU
        except TypeError as exc:
            answers[call] = f"refused: {exc}"
    return answers


if __name__ == "__main__":
    print(json.dumps({
        "cupy_version": cupy.__version__,
        "cupy": public(cupy),
        "cupy.random": public(cupy.random),
        "cupy.linalg": public(cupy.linalg),
        "cupyx": public(cupyx),
        "cupy.random.Generator": public(cupy.random.Generator),
        "cupy.ndarray": public(cupy.ndarray) + ["__array_priority__"],
        "cupy.cuda.runtime": public(cupy.cuda.runtime),
        "cupy.cuda.Device": public(cupy.cuda.Device),
        "signatures": signatures(),
        "probes": probes(),
    }, indent=1))
