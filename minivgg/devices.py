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


class device:
    """A device, as `torch.device`: `device('cpu')`, `device('cuda')`, `device('cuda', 1)`, `device('cuda:1')`.

    minivgg itself names devices by strings; a `device` goes wherever a name does (its str() is one), and it
    equals the strings that name the same device: `device('cuda') == 'cuda:0'`."""

    def __init__(self, type, index=None):
        text = str(type) if index is None else f"{type}:{int(index)}"
        self.type, number = parse_device(text)
        self.index = None if self.type == "cpu" or (index is None and ":" not in text) else number
        self._canonical = canonical_device(text)

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        index = "" if self.index is None else f", index={self.index}"
        return f"device(type='{self.type}'{index})"

    def __eq__(self, other):
        if not isinstance(other, (str, device)):
            return NotImplemented
        try:
            return self._canonical == canonical_device(other)
        except ValueError:  # a string that names no device
            return False

    def __hash__(self):
        return hash(self._canonical)
