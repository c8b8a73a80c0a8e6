"""Seeing gradients: step-by-step backward tables, graph drawings, a gradient monitor, a per-layer activation
and gradient table, and a layer-by-layer comparison with PyTorch. (Step-through backward itself is
`Tensor.backward_steps()`; anomaly detection is `minivgg.detect_anomaly()`.)"""
from .graph import draw_graph, print_graph, to_dot, trace
from .layers import layer_table
from .monitor import GradientMonitor
from .torch_bridge import compare_with_torch, to_torch

__all__ = ["GradientMonitor", "compare_with_torch", "draw_graph", "layer_table", "print_graph", "to_dot", "to_torch",
           "trace"]
