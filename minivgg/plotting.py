"""matplotlib, set up once for the whole package. Every figure minivgg draws is written to a file, often on a
machine without a screen, so pyplot runs on the Agg backend. matplotlib is imported on the first call only:
`import minivgg` stays NumPy-only and a run that draws nothing never pays for matplotlib."""


def pyplot():
    """matplotlib.pyplot on the Agg backend (draws to files; no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
