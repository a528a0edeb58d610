"""Lecture layers written from scratch, each tested equal to its Keras counterpart.

- :class:`PerceptronDense` -- ``y = g(w0 + X^T W)`` (``keras.layers.Dense``)
- :class:`SimpleRNNCellScratch` -- ``h_t = tanh(W_hh h_{t-1} + W_xh x_t + b)``
  (``keras.layers.SimpleRNNCell``)
- :func:`scaled_dot_product_attention`, :func:`causal_mask` and
  :class:`MultiHeadAttentionScratch` (``keras.layers.MultiHeadAttention``)
- :class:`SinusoidalPositionalEncoding` and :func:`sinusoidal_positions`
- :class:`ScheduledDropout` -- dropout whose rate a callback changes during training
- :class:`FillMissing` -- missing values filled with training-split values
  (``sklearn.impute.SimpleImputer``)

Importing this package imports Keras (and so TensorFlow).
"""

from tfdl.layers.attention import (
    MultiHeadAttentionScratch,
    causal_mask,
    scaled_dot_product_attention,
)
from tfdl.layers.dense import PerceptronDense
from tfdl.layers.fill_missing import FillMissing
from tfdl.layers.positional_encoding import SinusoidalPositionalEncoding, sinusoidal_positions
from tfdl.layers.rnn_cell import SimpleRNNCellScratch
from tfdl.layers.scheduled_dropout import ScheduledDropout

__all__ = [
    "FillMissing",
    "MultiHeadAttentionScratch",
    "PerceptronDense",
    "ScheduledDropout",
    "SimpleRNNCellScratch",
    "SinusoidalPositionalEncoding",
    "causal_mask",
    "scaled_dot_product_attention",
    "sinusoidal_positions",
]
