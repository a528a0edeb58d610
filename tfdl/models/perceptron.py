"""Lecture 1: the perceptron."""

import keras

from tfdl.models.heads import inputs_for, output_head


def build_perceptron(spec, *, activation: str = "auto") -> keras.Model:
    """A single neuron: y = g(w0 + X^T W).

    `activation` is g; "auto" picks the task's own (sigmoid for binary, linear for
    regression). Inputs with more than one axis are flattened first.
    """
    inputs, x = inputs_for(spec, flatten=True)
    outputs = output_head(x, spec, None if activation == "auto" else activation)
    return keras.Model(inputs, outputs, name="perceptron")
