"""Lecture 3: convolutional neural networks, for images (2-D) and sequences (1-D).

Feature learning, then classification: blocks of convolution (local patches of the input
weighted by a shared filter) -> non-linearity -> pooling (downsampling) learn a hierarchy
of features; a flatten and fully connected layers turn them into the task's prediction.
"""

import keras

from tfdl.models.augment import augmentation
from tfdl.models.heads import as_sequence, inputs_for, output_head
from tfdl.models.heads import dropout as dropout_layer

_POOL = {
    1: {"max": keras.layers.MaxPooling1D, "average": keras.layers.AveragePooling1D},
    2: {"max": keras.layers.MaxPooling2D, "average": keras.layers.AveragePooling2D},
}
_CONV = {1: keras.layers.Conv1D, 2: keras.layers.Conv2D}


def per_block(value, n: int, name: str) -> list:
    """One value for each of `n` blocks: an int repeated, or a list of exactly `n`."""
    if isinstance(value, int):
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise ValueError(f"{name} lists {len(value)} values for {n} conv blocks")
    return value


def sequence_input(spec, arch: str):
    """Input for a 1-D net: (T, C) as it is, a flat (T,) read as T steps of one feature."""
    inputs, x = inputs_for(spec)
    return inputs, as_sequence(x, arch)


def _pool(x, dims: int, pool: str, pool_size: int, name: str):
    """Pooling that never shrinks an axis below 1: the window is clamped to the axis.

    An 8x8 digit is 1x1 after three 2x2 pools; a fourth block then keeps it as it is
    instead of failing on a negative output size.
    """
    spatial = x.shape[1:-1]
    size = tuple(min(pool_size, d) if d is not None else pool_size for d in spatial)
    if all(s == 1 for s in size):
        return x  # nothing left to downsample
    size = size[0] if dims == 1 else size
    return _POOL[dims][pool](pool_size=size, strides=size, padding="same", name=name)(x)


def _conv_net(
    spec,
    *,
    dims: int,
    name: str,
    inputs,
    x,
    filters,
    kernel_size,
    strides,
    pool,
    pool_size,
    batch_norm,
    activation,
    dense_units,
    dropout,
):
    n = len(filters)
    kernels = per_block(kernel_size, n, "kernel_size")
    steps = per_block(strides, n, "strides")
    for i, (width, k, s) in enumerate(zip(filters, kernels, steps, strict=True), start=1):
        # "same" padding keeps the borders, so the size changes only with stride and pooling.
        x = _CONV[dims](
            width, k, strides=s, padding="same", use_bias=not batch_norm, name=f"block{i}_conv"
        )(x)
        if batch_norm:  # its beta replaces the conv bias
            x = keras.layers.BatchNormalization(name=f"block{i}_batch_norm")(x)
        x = keras.layers.Activation(activation, name=f"block{i}_{activation}")(x)
        if pool != "none":
            x = _pool(x, dims, pool, pool_size, f"block{i}_{pool}_pool")
    # Flatten, not global pooling: it keeps *where* a feature fired (a stroke at the top
    # or the bottom of a digit), and after the pools the maps are small (2x2 for digits).
    x = keras.layers.Flatten(name="flatten")(x)
    if dropout:
        x = dropout_layer(dropout, name="dropout")(x)
    for i, units in enumerate(dense_units):
        x = keras.layers.Dense(units, activation=activation, name=f"dense_{i}")(x)
        if dropout:
            x = dropout_layer(dropout, name=f"dropout_{i}")(x)
    return keras.Model(inputs, output_head(x, spec), name=name)


def build_cnn2d(
    spec,
    *,
    filters=(32, 64),
    kernel_size=3,
    strides=1,
    pool: str = "max",
    pool_size: int = 2,
    batch_norm: bool = True,
    activation: str = "relu",
    dense_units=(64,),
    dropout: float = 0.25,
    augment=None,
) -> keras.Model:
    """2-D CNN: blocks h = pool(g(BN(W * x))), then flatten, dropout and a dense head.

    Each conv filter W (kernel_size x kernel_size x channels) slides over the image with
    the given stride: z[i, j] = sum_{p,q,c} W[p, q, c] x[i*s + p, j*s + q, c] + b.
    `kernel_size` and `strides` are one value for every block or a list with one per block;
    `pool` is "max", "average" or "none". `augment` (flip, rotation, zoom, translation)
    randomly transforms the training images only. Needs images (height, width, channels).
    """
    if len(spec.body_shape) != 3:
        raise ValueError(
            f"cnn2d needs images of shape (height, width, channels), got "
            f"{spec.body_shape}; for digits set data.as_images: true"
        )
    inputs, x = inputs_for(spec)
    layers = augmentation(augment)
    if layers is not None:
        x = layers(x)
    return _conv_net(
        spec,
        dims=2,
        name="cnn2d",
        inputs=inputs,
        x=x,
        filters=filters,
        kernel_size=kernel_size,
        strides=strides,
        pool=pool,
        pool_size=pool_size,
        batch_norm=batch_norm,
        activation=activation,
        dense_units=dense_units,
        dropout=dropout,
    )


def build_cnn1d(
    spec,
    *,
    filters=(32, 64),
    kernel_size=5,
    strides=1,
    pool: str = "max",
    pool_size: int = 2,
    batch_norm: bool = True,
    activation: str = "relu",
    dense_units=(64,),
    dropout: float = 0.25,
) -> keras.Model:
    """1-D CNN: the same blocks along time, z[t] = sum_{p,c} W[p, c] x[t*s + p, c] + b.

    For sequences (steps, channels) such as DNA, music or MNIST-1D; a flat vector of T
    features is read as T steps of one channel. Blocks h = pool(g(BN(W * x))), then
    flatten, dropout and a dense head.
    """
    inputs, x = sequence_input(spec, "cnn1d")
    return _conv_net(
        spec,
        dims=1,
        name="cnn1d",
        inputs=inputs,
        x=x,
        filters=filters,
        kernel_size=kernel_size,
        strides=strides,
        pool=pool,
        pool_size=pool_size,
        batch_norm=batch_norm,
        activation=activation,
        dense_units=dense_units,
        dropout=dropout,
    )
