"""Distinct hidden units per dense layer: the symmetry a zero initialisation never breaks."""

import keras
import numpy as np


def distinct_units(kernel, bias=None, tolerance: float = 1e-5) -> int:
    """How many different units a dense layer has: units whose incoming weights and bias
    (one column of `kernel`, one entry of `bias`) all differ by at most `tolerance` times
    the layer's largest weight count as one.

    Args:
        kernel: (inputs, units) weights.
        bias: (units,) biases, or None.
        tolerance: relative to the largest absolute weight of the layer.
    """
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial.distance import pdist, squareform

    units = np.asarray(kernel, dtype="float64").reshape(-1, np.shape(kernel)[-1]).T
    if bias is not None:
        units = np.column_stack([units, np.asarray(bias, dtype="float64")])
    if len(units) < 2:
        return len(units)
    scale = float(np.abs(units).max())
    same = squareform(pdist(units, "chebyshev")) <= tolerance * scale
    return int(connected_components(same, directed=False)[0])


def hidden_dense_layers(model) -> list:
    """The dense layers (Keras's and the scratch one) whose output is no model output."""
    from tfdl.layers import PerceptronDense

    outputs = {id(o) for o in model.outputs}
    dense = (keras.layers.Dense, PerceptronDense)
    layers = [la for la in model._flatten_layers(include_self=False) if isinstance(la, dense)]
    # A layer's outputs from every call (a shared layer has several).
    return [
        la
        for la in layers
        if la._inbound_nodes
        and not any(id(t) in outputs for node in la._inbound_nodes for t in node.outputs)
    ]


class HiddenUnits(keras.callbacks.Callback):
    """Adds `distinct_units/<layer>` to the epoch logs for every hidden dense layer.

    All weights at zero, every unit of a layer computes the same value and receives the
    same gradient, so the count stays 1 however long the net trains; a random start
    gives as many as the layer is wide.
    """

    def __init__(self, tolerance: float = 1e-5):
        super().__init__()
        self.tolerance = tolerance

    def set_model(self, model):
        super().set_model(model)
        self.layers = hidden_dense_layers(model)  # the graph is fixed: found once

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for layer in self.layers:
            weights = layer.get_weights()
            bias = weights[1] if len(weights) > 1 else None
            logs[f"distinct_units/{layer.name}"] = distinct_units(weights[0], bias, self.tolerance)
