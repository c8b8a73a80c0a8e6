"""CuPy's recorded signatures (tests/cupy_api.json, "signatures"), for the strict stand-in: which arguments a
CuPy function or method accepts, so a call CuPy would refuse is refused without a GPU.

A recorded signature is a parameter list without the defaults, e.g. "x1, x2, /, out=, *, casting=, dtype="
for cupy.multiply; `refusal(name, args, kwargs)` binds a call to it the way Python would.
"""
import inspect
import json
import os

API = json.load(open(os.path.join(os.path.dirname(__file__), "cupy_api.json")))
RECORDED = API.get("signatures", {})
_P = inspect.Parameter
_cache = {}


def _parse(text):
    """'a, axis=, /, *, **kwargs' -> inspect.Signature (a default stands for "has a default")."""
    params, kind = [], _P.POSITIONAL_OR_KEYWORD
    for token in [t.strip() for t in text.split(",") if t.strip()]:
        if token == "/":
            params = [p.replace(kind=_P.POSITIONAL_ONLY) for p in params]
        elif token == "*":
            kind = _P.KEYWORD_ONLY
        elif token.startswith("**"):
            params.append(_P(token[2:], _P.VAR_KEYWORD))
        elif token.startswith("*"):
            params.append(_P(token[1:], _P.VAR_POSITIONAL))
            kind = _P.KEYWORD_ONLY
        else:
            name, has_default = token.rstrip("="), token.endswith("=")
            params.append(_P(name, kind, default=None if has_default else _P.empty))
    return inspect.Signature(params)


def signature(name):
    """The inspect.Signature CuPy has for `name` ('cupy.sum', 'cupy.ndarray.max', ...), or None if none was
    recorded (then nothing is checked)."""
    if name not in _cache:
        text = RECORDED.get(name)
        _cache[name] = None if text is None else _parse(text)
    return _cache[name]


def refusal(name, args, kwargs):
    """None if CuPy's `name` accepts these arguments, else the reason it refuses them, naming the function
    and the keyword."""
    sig = signature(name)
    if sig is None:
        return None
    params = sig.parameters
    takes_any = any(p.kind is _P.VAR_KEYWORD for p in params.values())
    for key in kwargs:
        if not takes_any and (key not in params or params[key].kind is _P.POSITIONAL_ONLY):
            return (f"{name}() got an unexpected keyword argument {key!r}: CuPy {API['cupy_version']} "
                    f"accepts {name.rsplit('.', 1)[-1]}({RECORDED[name]})")
    try:
        sig.bind(*args, **kwargs)
    except TypeError as exc:
        return f"{name}(): {exc} (CuPy {API['cupy_version']}: {name.rsplit('.', 1)[-1]}({RECORDED[name]}))"
    return None
