"""Lecture 1: single-layer and deep feed-forward networks."""

import keras

from tfdl.models.heads import dense, inputs_for, output_head
from tfdl.models.heads import dropout as dropout_layer


def build_single_layer_net(
    spec, *, units: int = 32, activation: str = "relu", impl: str = "keras"
) -> keras.Model:
    """One hidden layer: z = g(w0^(1) + X^T W^(1)), y = output(w0^(2) + z^T W^(2))."""
    inputs, x = inputs_for(spec, flatten=True)
    x = dense(impl)(units, activation=activation, name="hidden")(x)
    return keras.Model(inputs, output_head(x, spec, impl=impl), name="single_layer_net")


def build_deep_mlp(
    spec,
    *,
    units=(64, 32),
    activation: str = "relu",
    initializer: str = "he_normal",
    dropout: float = 0.0,
    batch_norm: bool = False,
    residual: bool = False,
    impl: str = "keras",
) -> keras.Model:
    """Stacked dense layers: z_k = g(W_k z_{k-1} + b_k), then the task's output layer.

    He initialisation suits ReLU-like activations, Glorot suits sigmoid/tanh; dropout
    after each hidden layer regularises; batch norm goes between the affine map and g
    (the layer's bias is dropped then, since batch norm's beta replaces it). `residual`
    adds the skip z_k = z_{k-1} + g(...) wherever a layer keeps its input's width, so
    gradients reach the early layers undiminished. `initializer="zeros"` zeroes every
    weight, the output layer's too: the lecture's question of whether a net can start so
    (its hidden units then stay copies of one another).
    """
    inputs, x = inputs_for(spec, flatten=True)
    for i, width in enumerate(units):
        skip = x
        x = dense(impl)(
            width, kernel_initializer=initializer, use_bias=not batch_norm, name=f"dense_{i}"
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"batch_norm_{i}")(x)
        x = keras.layers.Activation(activation, name=f"{activation}_{i}")(x)
        if dropout:
            x = dropout_layer(dropout, name=f"dropout_{i}")(x)
        if residual and skip.shape[-1] == width:
            x = keras.layers.Add(name=f"skip_{i}")([skip, x])
    # Random output weights would tell the hidden units apart through their gradients.
    head = "zeros" if initializer == "zeros" else "glorot_uniform"
    return keras.Model(
        inputs, output_head(x, spec, impl=impl, kernel_initializer=head), name="deep_mlp"
    )
