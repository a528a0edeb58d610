"""Lecture 1: the perceptron, with one output neuron or one per output."""

import keras

from tfdl.models.heads import inputs_for, output_head


def build_perceptron(spec, *, activation: str = "auto", impl: str = "keras") -> keras.Model:
    """A single neuron: y = g(w0 + X^T W).

    `activation` is g; "auto" picks the task's own (sigmoid for binary, linear for
    regression). Inputs with more than one axis are flattened first.
    """
    inputs, x = inputs_for(spec, flatten=True)
    outputs = output_head(x, spec, None if activation == "auto" else activation, impl)
    return keras.Model(inputs, outputs, name="perceptron")


def build_multi_output_perceptron(spec, *, impl: str = "keras") -> keras.Model:
    """One perceptron per output: z_i = w0_i + X^T W_i, y = softmax(z) for classes.

    No hidden layer: the decision boundaries between classes are linear.
    """
    inputs, x = inputs_for(spec, flatten=True)
    return keras.Model(inputs, output_head(x, spec, impl=impl), name="multi_output_perceptron")
