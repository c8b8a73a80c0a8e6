"""Device names: 'cpu', 'cuda' and 'cuda:N', read in one place.

Pure text, no CuPy: whether the device exists is for `minivgg.cuda` to say."""


def parse_device(device):
    """'cpu', 'cuda' or 'cuda:N' (any case; None means 'cpu') -> ('cpu', None) or ('cuda', N)."""
    if device is None:
        return "cpu", None
    text = str(device).strip().lower()
    if text == "cpu":
        return "cpu", None
    if text == "cuda":
        return "cuda", 0
    kind, colon, index = text.partition(":")
    if kind == "cuda" and colon and index.isdigit():
        return "cuda", int(index)
    raise ValueError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'")


def canonical_device(device):
    """'cpu', 'cuda' or 'cuda:N' -> 'cpu' or 'cuda:N'. None means 'cpu'."""
    kind, index = parse_device(device)
    return "cpu" if kind == "cpu" else f"cuda:{index}"
