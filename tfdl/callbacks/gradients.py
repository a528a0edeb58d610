"""Gradient health: per-layer gradient norms on a fixed batch, vanishing and exploding."""

import keras
import numpy as np
import tensorflow as tf


def layer_gradient_norms(model, x, y) -> dict[str, float]:
    """||dL/dθ|| per layer with weights, in inference mode (no dropout noise, and batch
    norm's moving averages are left alone), on the batch (x, y)."""
    with tf.GradientTape() as tape:
        y_pred = model(x, training=False)
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred, training=False)
    variables = model.trainable_variables
    grads = dict(zip((id(v) for v in variables), tape.gradient(loss, variables), strict=True))
    norms = {}
    for layer in model._flatten_layers(include_self=False):
        own = [v for v in layer._trainable_variables if id(v) in grads]
        if own:
            squares = [
                float(tf.reduce_sum(tf.square(grads[id(v)])))
                for v in own
                if grads[id(v)] is not None
            ]
            norms[layer.name] = float(np.sqrt(sum(squares)))
    return norms


class GradientHealth(keras.callbacks.Callback):
    """Logs `grad_norm/<layer>` each epoch and remembers the layers whose norm fell below
    `vanish_below` or rose above `explode_above` (first epoch each, 1-based)."""

    def __init__(self, x, y, vanish_below: float, explode_above: float):
        super().__init__()
        self.x, self.y = x, y
        self.vanish_below, self.explode_above = vanish_below, explode_above
        self.vanishing: dict[str, int] = {}
        self.exploding: dict[str, int] = {}

    def on_epoch_end(self, epoch, logs=None):
        for name, norm in layer_gradient_norms(self.model, self.x, self.y).items():
            if logs is not None:
                logs[f"grad_norm/{name}"] = norm
            if norm < self.vanish_below:
                self.vanishing.setdefault(name, epoch + 1)
            elif norm > self.explode_above or not np.isfinite(norm):
                self.exploding.setdefault(name, epoch + 1)

    def tags(self) -> dict[str, str]:
        def describe(found):
            return ", ".join(f"{name} (epoch {e})" for name, e in found.items())

        tags = {}
        if self.vanishing:
            tags["tfdl.gradients.vanishing"] = describe(self.vanishing)
        if self.exploding:
            tags["tfdl.gradients.exploding"] = describe(self.exploding)
        return tags
