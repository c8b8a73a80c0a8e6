"""GradientMonitor: gradient statistics per layer over training, and their plot."""
import math
import sys

import numpy as np


class GradientMonitor:
    """Record, per parameter and per step, the gradient's norm, mean, std, max |g|, fraction of exact zeros
    and the update-to-weight ratio |dW|/|W|; per ReLU the fraction of dead units (outputs that are zero
    for every example of the batch).

    Call `before_step()` after backward and `after_step()` after `optimizer.step()` (`fit` does both);
    `every=k` records one step in k (the update ratio copies the weights).
    """

    def __init__(self, net, every=1):
        from .. import nn

        self.names = [name for name, _ in net.named_parameters()]
        self.params = [p for _, p in net.named_parameters()]
        self.every, self.step = every, 0
        self.history = []  # one dict per recorded step: {"step", "params": {name: stats}, "relu": {name: frac}}
        self._relu_dead = {}
        self._before = None
        self._handles = [m.register_forward_hook(self._relu_hook(name))
                         for name, m in net.named_modules() if isinstance(m, nn.ReLU)]

    def _relu_hook(self, name):
        def hook(module, inputs, output):
            if module.training and self._recording():
                alive = (output.data > 0).any(axis=0)
                self._relu_dead[name] = 1.0 - float(alive.mean())
        return hook

    def _recording(self):
        return self.step % self.every == 0

    def before_step(self):
        if self._recording():
            self._before = [p.data.copy() for p in self.params]

    def after_step(self):
        if self._recording() and self._before is not None:
            record = {"step": self.step, "params": {}, "relu": dict(self._relu_dead)}
            for name, p, old in zip(self.names, self.params, self._before):
                record["params"][name] = self.statistics(p.grad.data if p.grad is not None else None, old, p.data)
            self.history.append(record)
            self._before = None
        self.step += 1

    @staticmethod
    def statistics(grad, weight_before, weight_after):
        """The monitor's numbers for one parameter: a dict of floats (NaN where there is no gradient)."""
        if grad is None:
            return {k: math.nan for k in ("norm", "mean", "std", "max_abs", "zero_frac", "update_ratio")}
        g = grad.astype(np.float64)
        w_norm = float(np.sqrt((weight_before.astype(np.float64) ** 2).sum()))
        update = float(np.sqrt(((weight_after.astype(np.float64) - weight_before) ** 2).sum()))
        return {"norm": float(np.sqrt((g ** 2).sum())), "mean": float(g.mean()), "std": float(g.std()),
                "max_abs": float(abs(g).max()), "zero_frac": float((g == 0).mean()),
                "update_ratio": update / w_norm if w_norm else math.nan}

    def remove(self):
        for h in self._handles:
            h.remove()

    def table(self, file=None):
        """Print the latest recorded values, one row per parameter, then the ReLUs' dead fractions."""
        if not self.history:
            print("GradientMonitor: nothing recorded yet", file=file or sys.stdout)
            return
        last = self.history[-1]
        lines = [f"step {last['step']}",
                 f"{'parameter':<22} {'norm':>10} {'mean':>10} {'std':>10} {'max|g|':>10} {'zeros':>6} {'|dW|/|W|':>9}"]
        for name, s in last["params"].items():
            lines.append(f"{name:<22} {s['norm']:>10.3e} {s['mean']:>10.2e} {s['std']:>10.3e} {s['max_abs']:>10.3e} "
                         f"{s['zero_frac']:>6.3f} {s['update_ratio']:>9.2e}")
        for name, frac in last["relu"].items():
            lines.append(f"ReLU {name:<17} dead units {frac:.3f}")
        print("\n".join(lines), file=file or sys.stdout)

    def plot(self, path):
        """Gradient flow: left, the latest gradient norm per weight across the layers (input to output);
        right, each weight's gradient norm over the recorded steps. PNG via matplotlib."""
        if not self.history:
            return None
        from ..plotting import pyplot, savefig

        plt = pyplot()
        weights = [n for n in self.names if n.endswith("weight")]
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
        last = self.history[-1]["params"]
        left.bar(range(len(weights)), [last[n]["norm"] for n in weights], color="tab:blue")
        left.set_xticks(range(len(weights)), weights, rotation=70, fontsize=7)
        left.set_yscale("log")
        left.set_title("gradient norm per layer (latest step)")
        steps = [r["step"] for r in self.history]
        for n in weights:  # markers: a history of one step is a column of points, not an empty panel
            right.plot(steps, [r["params"][n]["norm"] for r in self.history], marker="o", markersize=3, label=n)
        left.set_ylabel("|grad|")
        right.set_yscale("log")
        right.set_xlabel("step")
        right.set_ylabel("|grad|")
        right.set_title("gradient norm over training")
        right.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        try:
            savefig(fig, path)
        finally:
            plt.close(fig)
        return path
