"""Lecture 3: residual networks, y = F(x) + x.

A deeper plain net can train *worse* than a shallower one: the gradient has to pass
through every layer and fades. A residual block adds its input back to what its layers
compute, so each block only learns a correction F(x) = y - x and the skip connection is
a gradient highway straight to the early layers.
"""

import keras

from tfdl.models.augment import augmentation
from tfdl.models.cnn import sequence_input
from tfdl.models.heads import dropout as dropout_layer
from tfdl.models.heads import inputs_for, output_head

_CONV = {1: keras.layers.Conv1D, 2: keras.layers.Conv2D}
_GAP = {1: keras.layers.GlobalAveragePooling1D, 2: keras.layers.GlobalAveragePooling2D}


def _downsample(x, dims: int):
    """Stride 2 along each axis that is still longer than 1 (small inputs keep axes >= 1)."""
    strides = tuple(1 if d == 1 else 2 for d in x.shape[1:-1])
    return strides[0] if dims == 1 else strides


def _conv(dims, filters, kernel_size, strides, name):
    # No bias: batch norm's beta follows every conv. He initialisation suits ReLU.
    return _CONV[dims](
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=name,
    )


def _as_tuple(strides):
    return strides if isinstance(strides, tuple) else (strides,)


def residual_block(x, filters, *, dims, kernel_size, strides, residual, name):
    """y = ReLU(F(x) + skip(x)), F = conv-BN-ReLU-conv-BN.

    skip is the identity when F keeps the shape, else a projection W_s x (a 1x1 conv with
    the block's stride, then batch norm) that matches the width and length. With
    `residual=False` there is no skip: y = ReLU(F(x)), a plain block.
    """
    y = _conv(dims, filters, kernel_size, strides, f"{name}_conv1")(x)
    y = keras.layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = keras.layers.Activation("relu", name=f"{name}_relu1")(y)
    y = _conv(dims, filters, kernel_size, 1, f"{name}_conv2")(y)
    y = keras.layers.BatchNormalization(name=f"{name}_bn2")(y)
    if residual:
        skip = x
        if x.shape[-1] != filters or max(_as_tuple(strides)) > 1:
            skip = _conv(dims, filters, 1, strides, f"{name}_projection")(x)
            skip = keras.layers.BatchNormalization(name=f"{name}_projection_bn")(skip)
        y = keras.layers.Add(name=f"{name}_add")([y, skip])
    return keras.layers.Activation("relu", name=f"{name}_relu2")(y)


def build_resnet(
    spec,
    *,
    stem_filters: int = 16,
    stages=(16, 32),
    blocks_per_stage: int = 2,
    kernel_size: int = 3,
    residual: bool = True,
    dropout: float = 0.0,
    augment=None,
) -> keras.Model:
    """ResNet: stem conv, stages of residual blocks y = F(x) + x, global average pooling.

    2-D convolutions for images (height, width, channels), 1-D for sequences (steps,
    channels) or flat vectors (read as steps of one channel), chosen from the input rank.
    `stages` gives each stage's width; the first block of every stage after the first
    halves the length (stride 2) and uses a projection skip, as does any block that
    changes the width. `residual=False` builds the same net without skips (the plain net
    the lecture compares against). `augment` applies to images only.
    """
    dims = 2 if len(spec.body_shape) == 3 else 1
    if dims == 2:
        inputs, x = inputs_for(spec)
        layers = augmentation(augment)
        if layers is not None:
            x = layers(x)
    else:
        if augment is not None:
            raise ValueError("augment transforms images; this input is a sequence, drop augment")
        inputs, x = sequence_input(spec, "resnet")

    x = _conv(dims, stem_filters, kernel_size, 1, "stem_conv")(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.Activation("relu", name="stem_relu")(x)
    for s, width in enumerate(stages, start=1):
        for b in range(1, blocks_per_stage + 1):
            strides = _downsample(x, dims) if s > 1 and b == 1 else 1
            x = residual_block(
                x,
                width,
                dims=dims,
                kernel_size=kernel_size,
                strides=strides,
                residual=residual,
                name=f"stage{s}_block{b}",
            )
    x = _GAP[dims](name="global_average_pool")(x)
    if dropout:
        x = dropout_layer(dropout, name="dropout")(x)
    return keras.Model(inputs, output_head(x, spec), name="resnet" if residual else "plain_net")
