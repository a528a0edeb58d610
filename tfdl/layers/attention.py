"""Scaled dot-product attention and multi-head attention, written from scratch."""

import math

import keras
from keras import ops


def _large_negative(dtype):
    # Added to masked logits so exp() underflows to 0. -inf would give NaN for a
    # fully masked row; -1e9 overflows float16, hence the smaller value there.
    return -3e4 if keras.backend.standardize_dtype(dtype) == "float16" else -1e9


def causal_mask(t, t_k=None):
    """Lower-triangular boolean mask: query position ``i`` may attend to key ``j <= i``.

    Args:
        t: number of query positions (int or scalar tensor).
        t_k: number of key positions; defaults to ``t``.

    Returns:
        Boolean tensor of shape ``(t, t_k)``, True where attention is allowed.
        It broadcasts against attention logits of shape ``(..., t, t_k)``.
    """
    if t_k is None:
        t_k = t
    rows = ops.expand_dims(ops.arange(t), 1)
    cols = ops.expand_dims(ops.arange(t_k), 0)
    return ops.greater_equal(rows, cols)


def scaled_dot_product_attention(q, k, v, mask=None):
    """``Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V``.

    Each query is compared with every key by a dot product; dividing by
    ``sqrt(d_k)`` keeps the logits' variance near 1 so the softmax does not
    saturate as ``d_k`` grows. The softmax turns the similarities of one query
    into weights over the keys, and the output is the weighted sum of values.

    Args:
        q: queries, shape ``(..., T_q, d_k)``.
        k: keys, shape ``(..., T_k, d_k)``.
        v: values, shape ``(..., T_k, d_v)``.
        mask: optional boolean tensor broadcastable to ``(..., T_q, T_k)``;
            True means "may attend". Masked logits are replaced by a large
            negative number before the softmax and the resulting weights are
            set to exactly 0 afterwards (so a fully masked row gets all-zero
            weights instead of a uniform average, as in ``keras.layers.Softmax``).

    Returns:
        ``(output, weights)``: output of shape ``(..., T_q, d_v)`` and attention
        weights of shape ``(..., T_q, T_k)`` whose rows sum to 1 (or 0 if the
        whole row is masked).
    """
    q = ops.convert_to_tensor(q)
    k = ops.convert_to_tensor(k, dtype=q.dtype)
    v = ops.convert_to_tensor(v, dtype=q.dtype)
    d_k = q.shape[-1]
    # Scale the queries rather than the logits: fewer multiplications when
    # T_k > d_k, and the same order of operations as keras.layers.MultiHeadAttention.
    if d_k is not None:
        scale = ops.cast(1.0 / math.sqrt(d_k), q.dtype)
    else:
        scale = ops.rsqrt(ops.cast(ops.shape(q)[-1], q.dtype))
    logits = ops.matmul(ops.multiply(q, scale), ops.swapaxes(k, -1, -2))
    if mask is not None:
        mask = ops.cast(mask, "bool")
        logits = ops.where(mask, logits, _large_negative(logits.dtype))
    weights = ops.softmax(logits, axis=-1)
    if mask is not None:
        weights = ops.where(mask, weights, ops.zeros_like(weights))
    output = ops.matmul(weights, v)
    return output, weights


@keras.saving.register_keras_serializable(package="tfdl")
class MultiHeadAttentionScratch(keras.layers.Layer):
    """Multi-head attention: ``MultiHead(Q, K, V) = Concat(head_1..head_h) W^O``.

    With ``head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)`` (see
    :func:`scaled_dot_product_attention`). Each head projects the inputs to its
    own small subspace, so different heads can attend to different things; the
    output projection mixes the heads back into ``output_dim`` features. Pass
    the same tensor as ``query`` and ``value`` for self-attention, or a
    different ``value`` (e.g. encoder output) for cross-attention.

    Weights mirror ``keras.layers.MultiHeadAttention`` in shape and order, so
    ``scratch.set_weights(keras_mha.get_weights())`` copies one to one:

    ====================  ===================================
    ``query_kernel``      ``(d_query, num_heads, key_dim)``
    ``query_bias``        ``(num_heads, key_dim)``
    ``key_kernel``        ``(d_key, num_heads, key_dim)``
    ``key_bias``          ``(num_heads, key_dim)``
    ``value_kernel``      ``(d_value, num_heads, value_dim)``
    ``value_bias``        ``(num_heads, value_dim)``
    ``output_kernel``     ``(num_heads, value_dim, output_dim)``
    ``output_bias``       ``(output_dim,)``
    ====================  ===================================

    (biases are absent when ``use_bias=False``). Keeping the heads as a separate
    axis of the kernel is the same as one big ``(d, num_heads * key_dim)``
    matrix split into heads, but needs no reshapes.

    Differences from the Keras layer: no dropout on the attention weights, no
    ``attention_axes`` (inputs must be ``(batch, T, features)``), and implicit
    Keras masks (e.g. from ``Embedding(mask_zero=True)``) are not read; pass
    ``attention_mask`` explicitly.

    Args:
        num_heads: number of attention heads ``h``.
        key_dim: size of each head's query and key vectors ``d_k``.
        value_dim: size of each head's value vectors; defaults to ``key_dim``.
        output_dim: size of the output features; defaults to the query's last
            dimension (like ``output_shape=None`` in Keras).
        use_bias: whether the four projections have biases.
        kernel_initializer: initializer for the projection kernels.
        bias_initializer: initializer for the projection biases.
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        output_dim=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        for arg, val in (("num_heads", num_heads), ("key_dim", key_dim)):
            if not isinstance(val, int) or val <= 0:
                raise ValueError(f"`{arg}` must be a positive integer, got {val!r}.")
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = value_dim if value_dim else key_dim
        self.output_dim = output_dim
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def _projection(self, name, in_dim, head_dim):
        kernel = self.add_weight(
            shape=(in_dim, self.num_heads, head_dim),
            initializer=self.kernel_initializer,
            name=f"{name}_kernel",
        )
        bias = None
        if self.use_bias:
            bias = self.add_weight(
                shape=(self.num_heads, head_dim),
                initializer=self.bias_initializer,
                name=f"{name}_bias",
            )
        return kernel, bias

    def build(self, query_shape, value_shape, key_shape=None):
        if key_shape is None:
            key_shape = value_shape
        # Same creation order as Keras (query, key, value, output) so that
        # get_weights()/set_weights() line up between the two layers.
        self.query_kernel, self.query_bias = self._projection(
            "query", query_shape[-1], self.key_dim
        )
        self.key_kernel, self.key_bias = self._projection("key", key_shape[-1], self.key_dim)
        self.value_kernel, self.value_bias = self._projection(
            "value", value_shape[-1], self.value_dim
        )
        out_dim = self.output_dim or query_shape[-1]
        self.output_kernel = self.add_weight(
            shape=(self.num_heads, self.value_dim, out_dim),
            initializer=self.kernel_initializer,
            name="output_kernel",
        )
        self.output_bias = None
        if self.use_bias:
            self.output_bias = self.add_weight(
                shape=(out_dim,), initializer=self.bias_initializer, name="output_bias"
            )

    @staticmethod
    def _project(x, kernel, bias):
        # (batch, T, d) x (d, heads, dim) -> (batch, heads, T, dim): the einsum
        # projects and moves the head axis in front of time in one step.
        y = ops.einsum("btd,dnh->bnth", x, kernel)
        if bias is not None:
            y = ops.add(y, ops.expand_dims(bias, 1))  # (heads, 1, dim) broadcasts over T
        return y

    def call(
        self,
        query,
        value,
        key=None,
        attention_mask=None,
        return_attention_scores=False,
        use_causal_mask=False,
        training=None,
    ):
        """Attend from ``query`` (batch, T_q, d_q) to ``value``/``key`` (batch, T_k, d).

        Args:
            query: query sequence.
            value: value sequence; also used as ``key`` when ``key`` is None.
            key: optional key sequence, same length as ``value``.
            attention_mask: optional boolean mask broadcastable to
                ``(batch, T_q, T_k)`` (or to ``(batch, heads, T_q, T_k)``);
                True = may attend.
            return_attention_scores: also return the attention weights,
                shape ``(batch, num_heads, T_q, T_k)``.
            use_causal_mask: AND a lower-triangular mask into the mask so a
                query position cannot see later key positions (decoders).
            training: unused (no dropout); accepted for Keras compatibility.
        """
        if key is None:
            key = value
        q = self._project(query, self.query_kernel, self.query_bias)
        k = self._project(key, self.key_kernel, self.key_bias)
        v = self._project(value, self.value_kernel, self.value_bias)

        mask = None
        if attention_mask is not None:
            mask = ops.cast(attention_mask, "bool")
            # (batch, T_q, T_k) -> (batch, 1, T_q, T_k): the same mask for every head.
            while len(mask.shape) < 4:
                mask = ops.expand_dims(mask, -3)
        if use_causal_mask:
            causal = causal_mask(ops.shape(query)[1], ops.shape(value)[1])
            mask = causal if mask is None else ops.logical_and(mask, causal)

        heads, scores = scaled_dot_product_attention(q, k, v, mask)  # (b, n, T_q, dv)
        # Concatenating heads and multiplying by W^O == summing each head's
        # contribution through its slice of the output kernel.
        output = ops.einsum("bnth,nho->bto", heads, self.output_kernel)
        if self.output_bias is not None:
            output = ops.add(output, self.output_bias)
        if return_attention_scores:
            return output, scores
        return output

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "value_dim": self.value_dim,
                "output_dim": self.output_dim,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
