"""Sinusoidal positional encoding from "Attention Is All You Need"."""

import keras
import numpy as np
from keras import ops


def sinusoidal_positions(length, depth):
    """Table of sinusoidal position encodings, shape ``(length, depth)``, float32.

    ``PE(pos, 2i) = sin(pos / 10000^(2i/depth))`` and
    ``PE(pos, 2i+1) = cos(pos / 10000^(2i/depth))``.

    Each pair of columns is a sine/cosine at one frequency; frequencies fall
    geometrically from 1 to 1/10000 across the columns, so every position gets
    a distinct vector and a fixed offset is a linear (rotation) map of it.
    An odd ``depth`` is allowed: the last column is then a sine.
    """
    if length < 0 or depth <= 0:
        raise ValueError(f"Need length >= 0 and depth > 0, got {length=} and {depth=}.")
    pos = np.arange(length, dtype=np.float64)[:, None]  # (length, 1)
    col = np.arange(depth)[None, :]  # (1, depth)
    two_i = col - col % 2  # column j belongs to pair i = j // 2
    angles = pos / np.power(10000.0, two_i / depth)
    table = np.where(col % 2 == 0, np.sin(angles), np.cos(angles))
    return table.astype(np.float32)


@keras.saving.register_keras_serializable(package="tfdl")
class SinusoidalPositionalEncoding(keras.layers.Layer):
    """Adds position information to a sequence: ``y[b, t, :] = x[b, t, :] + PE(t, :)``.

    Attention by itself is permutation invariant, so token order must be put
    into the inputs. The fixed (not learned) table comes from
    :func:`sinusoidal_positions`; it is computed once for ``max_length``
    positions and sliced to the actual length ``T`` of each batch, so
    sequences of any length up to ``max_length`` work. Keras masks (e.g. from
    ``Embedding(mask_zero=True)``) pass through unchanged.

    Args:
        max_length: longest sequence the layer accepts.

    Input shape: ``(batch, T, d)``. Output shape: the same.
    """

    def __init__(self, max_length=2048, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(max_length, int) or max_length <= 0:
            raise ValueError(f"`max_length` must be a positive integer, got {max_length!r}.")
        self.max_length = max_length
        self.supports_masking = True

    def build(self, input_shape):
        depth = input_shape[-1]
        if depth is None:
            raise ValueError("The feature dimension of the input must be known.")
        # A constant, not a weight: nothing to train and nothing to save.
        self._table = sinusoidal_positions(self.max_length, depth)

    def call(self, inputs):
        length = inputs.shape[1]
        if length is not None and length > self.max_length:
            raise ValueError(f"Sequence length {length} exceeds max_length={self.max_length}.")
        if length is None:
            length = ops.shape(inputs)[1]
        table = ops.convert_to_tensor(self._table, dtype=inputs.dtype)
        pe = ops.slice(table, (0, 0), (length, self._table.shape[1]))
        return ops.add(inputs, pe)  # (T, d) broadcasts over the batch

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"max_length": self.max_length})
        return config
