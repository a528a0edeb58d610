"""The from-scratch lecture layers compute exactly what their Keras counterparts compute."""

import keras
import numpy as np
import pytest

from tfdl.layers import (
    MultiHeadAttentionScratch,
    PerceptronDense,
    SimpleRNNCellScratch,
    SinusoidalPositionalEncoding,
    causal_mask,
    scaled_dot_product_attention,
    sinusoidal_positions,
)

ATOL = 1e-5


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _randn(rng, *shape):
    return rng.normal(size=shape).astype("float32")


def _randomize(layer, rng):
    """Give every weight (biases too) a random value, so copying them is actually tested."""
    layer.set_weights([_randn(rng, *w.shape) * 0.5 for w in layer.get_weights()])


def _copy(src, dst):
    src_w, dst_w = src.get_weights(), dst.get_weights()
    assert [w.shape for w in src_w] == [w.shape for w in dst_w]
    dst.set_weights(src_w)


def _np_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# --- PerceptronDense ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("activation", "use_bias", "shape"),
    [(None, True, (4, 3)), ("sigmoid", True, (2, 5, 3)), ("relu", False, (4, 3))],
)
def test_perceptron_dense_matches_keras_dense(rng, activation, use_bias, shape):
    x = _randn(rng, *shape)
    ref = keras.layers.Dense(6, activation=activation, use_bias=use_bias)
    mine = PerceptronDense(6, activation=activation, use_bias=use_bias)
    ref(x), mine(x)
    _randomize(ref, rng)
    _copy(ref, mine)
    np.testing.assert_allclose(mine(x), ref(x), atol=ATOL)
    assert [w.path.split("/")[-1] for w in mine.weights] == (
        ["kernel", "bias"] if use_bias else ["kernel"]
    )


def test_perceptron_dense_equation(rng):
    x = _randn(rng, 4, 3)
    layer = PerceptronDense(2, activation="sigmoid")
    layer(x)
    _randomize(layer, rng)
    w, w0 = (v.numpy() for v in (layer.W, layer.w0))
    np.testing.assert_allclose(layer(x), 1 / (1 + np.exp(-(w0 + x @ w))), atol=ATOL)


# --- SimpleRNNCellScratch -------------------------------------------------------------------


@pytest.mark.parametrize("return_sequences", [True, False])
def test_rnn_cell_matches_keras_simple_rnn(rng, return_sequences):
    x = _randn(rng, 2, 5, 3)
    ref = keras.layers.SimpleRNN(4, return_sequences=return_sequences)
    mine = keras.layers.RNN(SimpleRNNCellScratch(4), return_sequences=return_sequences)
    ref(x), mine(x)
    _randomize(ref, rng)
    _copy(ref, mine)
    out = mine(x)
    assert out.shape == ((2, 5, 4) if return_sequences else (2, 4))
    np.testing.assert_allclose(out, ref(x), atol=ATOL)


def test_rnn_cell_unrolls_the_lecture_recurrence(rng):
    x = _randn(rng, 2, 4, 3)
    cell = SimpleRNNCellScratch(5)
    rnn = keras.layers.RNN(cell, return_sequences=True)
    rnn(x)
    _randomize(rnn, rng)
    w_xh, w_hh, b = (v.numpy() for v in (cell.kernel, cell.recurrent_kernel, cell.bias))
    h, expected = np.zeros((2, 5), "float32"), []
    for t in range(x.shape[1]):
        h = np.tanh(h @ w_hh + x[:, t] @ w_xh + b)
        expected.append(h)
    np.testing.assert_allclose(rnn(x), np.stack(expected, axis=1), atol=ATOL)
    assert [w.path.split("/")[-1] for w in cell.weights] == ["kernel", "recurrent_kernel", "bias"]


# --- scaled_dot_product_attention and causal_mask -------------------------------------------


def _np_attention(q, k, v, mask=None):
    logits = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if mask is not None:
        logits = np.where(mask, logits, -np.inf)
    w = _np_softmax(logits)
    return w @ v, w


def test_sdpa_matches_numpy(rng):
    q, k, v = _randn(rng, 2, 3, 4, 8), _randn(rng, 2, 3, 6, 8), _randn(rng, 2, 3, 6, 5)
    out, w = scaled_dot_product_attention(q, k, v)
    exp_out, exp_w = _np_attention(q, k, v)
    assert out.shape == (2, 3, 4, 5) and w.shape == (2, 3, 4, 6)
    np.testing.assert_allclose(w, exp_w, atol=ATOL)
    np.testing.assert_allclose(out, exp_out, atol=ATOL)
    np.testing.assert_allclose(np.sum(w, axis=-1), 1.0, atol=ATOL)


def test_sdpa_masked_positions_get_zero_weight(rng):
    q, k, v = _randn(rng, 2, 4, 8), _randn(rng, 2, 6, 8), _randn(rng, 2, 6, 5)
    mask = rng.random((2, 4, 6)) > 0.4
    mask[..., 0] = True  # every query keeps at least one key
    out, w = scaled_dot_product_attention(q, k, v, mask=mask)
    w = np.asarray(w)
    assert np.all(w[~mask] == 0.0)
    assert np.all(w[mask] > 0.0)
    np.testing.assert_allclose(w.sum(axis=-1), 1.0, atol=ATOL)
    exp_out, exp_w = _np_attention(q, k, v, mask)
    np.testing.assert_allclose(w, exp_w, atol=ATOL)
    np.testing.assert_allclose(out, exp_out, atol=ATOL)


def test_sdpa_broadcasts_mask_and_zeroes_fully_masked_rows(rng):
    q, k, v = _randn(rng, 2, 3, 4), _randn(rng, 2, 3, 4), _randn(rng, 2, 3, 4)
    mask = np.array([[True, False, False], [False, False, False], [True, True, True]])
    out, w = scaled_dot_product_attention(q, k, v, mask=mask)  # (3, 3) broadcast over batch
    w = np.asarray(w)
    np.testing.assert_allclose(w[:, 0], [[1, 0, 0]] * 2, atol=ATOL)
    np.testing.assert_allclose(w[:, 1], 0.0)
    np.testing.assert_allclose(np.asarray(out)[:, 1], 0.0)
    assert np.all(np.isfinite(out))


def test_causal_mask_is_lower_triangular():
    np.testing.assert_array_equal(causal_mask(4), np.tril(np.ones((4, 4), bool)))
    np.testing.assert_array_equal(causal_mask(2, 3), [[True, False, False], [True, True, False]])


def test_causal_mask_blocks_the_future(rng):
    x = _randn(rng, 1, 5, 4)
    _, w = scaled_dot_product_attention(x, x, x, mask=causal_mask(5))
    w = np.asarray(w)[0]
    assert np.all(np.triu(w, k=1) == 0.0)
    assert w[0, 0] == pytest.approx(1.0)


# --- MultiHeadAttentionScratch --------------------------------------------------------------

# (T_q, T_k, separate key input, mask kind, value_dim, output_dim, use_bias)
MHA_CASES = {
    "self": (5, 5, False, None, None, None, True),
    "self-padding": (5, 5, False, "padding", None, None, True),
    "self-causal": (5, 5, False, "causal", None, None, True),
    "self-causal+padding": (5, 5, False, "both", None, None, True),
    "cross": (3, 6, False, None, 4, 7, True),
    "cross-key-padding": (3, 6, True, "padding", None, None, True),
    "cross-no-bias-causal": (4, 6, False, "causal", 3, None, False),
}


@pytest.mark.parametrize("case", list(MHA_CASES), ids=list(MHA_CASES))
def test_mha_matches_keras(rng, case):
    t_q, t_k, with_key, mask_kind, value_dim, output_dim, use_bias = MHA_CASES[case]
    batch, heads, key_dim = 2, 2, 3
    query = _randn(rng, batch, t_q, 8)
    value = query if t_q == t_k and not with_key else _randn(rng, batch, t_k, 6)
    key = _randn(rng, batch, t_k, 5) if with_key else None

    kwargs = {}
    if mask_kind in ("padding", "both"):
        keep = np.ones((batch, t_k), bool)
        keep[0, -2:] = False  # first sequence has two padded key positions
        kwargs["attention_mask"] = np.broadcast_to(keep[:, None, :], (batch, t_q, t_k))
    if mask_kind in ("causal", "both"):
        kwargs["use_causal_mask"] = True

    ref = keras.layers.MultiHeadAttention(
        heads, key_dim, value_dim=value_dim, output_shape=output_dim, use_bias=use_bias
    )
    mine = MultiHeadAttentionScratch(
        heads, key_dim, value_dim=value_dim, output_dim=output_dim, use_bias=use_bias
    )
    ref(query, value, key=key)
    mine(query, value, key=key)
    _randomize(ref, rng)
    _copy(ref, mine)

    out, scores = mine(query, value, key=key, return_attention_scores=True, **kwargs)
    ref_out, ref_scores = ref(query, value, key=key, return_attention_scores=True, **kwargs)
    assert out.shape == (batch, t_q, output_dim or 8)
    assert scores.shape == (batch, heads, t_q, t_k)
    np.testing.assert_allclose(scores, ref_scores, atol=ATOL)
    np.testing.assert_allclose(out, ref_out, atol=ATOL)
    # Without scores Keras takes its fused dot_product_attention path; still equal.
    np.testing.assert_allclose(
        mine(query, value, key=key, **kwargs), ref(query, value, key=key, **kwargs), atol=ATOL
    )

    scores = np.asarray(scores)
    np.testing.assert_allclose(scores.sum(axis=-1), 1.0, atol=ATOL)
    if mask_kind in ("padding", "both"):
        assert np.all(scores[0, :, :, -2:] == 0.0)
    if mask_kind in ("causal", "both"):
        assert np.all(np.triu(scores, k=1) == 0.0)
    if mask_kind is None:
        assert np.all(scores > 0.0)


def test_mha_weight_layout_matches_keras():
    q, v = np.zeros((1, 4, 8), "float32"), np.zeros((1, 6, 5), "float32")
    ref = keras.layers.MultiHeadAttention(2, 3, value_dim=4, output_shape=7)
    mine = MultiHeadAttentionScratch(2, 3, value_dim=4, output_dim=7)
    ref(q, v), mine(q, v)
    expected = [(8, 2, 3), (2, 3), (5, 2, 3), (2, 3), (5, 2, 4), (2, 4), (2, 4, 7), (7,)]
    assert [tuple(w.shape) for w in ref.weights] == expected
    assert [tuple(w.shape) for w in mine.weights] == expected


# --- Sinusoidal positional encoding ---------------------------------------------------------


def test_sinusoidal_positions_matches_formula():
    length, depth = 7, 6
    table = sinusoidal_positions(length, depth)
    assert table.shape == (length, depth) and table.dtype == np.float32
    for pos in range(length):
        for i in range(depth // 2):
            angle = pos / 10000 ** (2 * i / depth)
            assert table[pos, 2 * i] == pytest.approx(np.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1] == pytest.approx(np.cos(angle), abs=1e-6)
    np.testing.assert_allclose(table[0], [0, 1] * (depth // 2))
    assert sinusoidal_positions(3, 5).shape == (3, 5)  # odd depth: last column is a sine


def test_sinusoidal_positions_are_distinct():
    table = sinusoidal_positions(64, 16)
    dists = np.linalg.norm(table[:, None] - table[None, :], axis=-1)
    assert np.all(dists[~np.eye(64, dtype=bool)] > 1e-3)


@pytest.mark.parametrize("length", [1, 5, 9])
def test_positional_encoding_layer_adds_table(rng, length):
    x = _randn(rng, 2, length, 6)
    layer = SinusoidalPositionalEncoding(max_length=10)
    out = np.asarray(layer(x))
    np.testing.assert_allclose(
        out - x, np.broadcast_to(sinusoidal_positions(length, 6), x.shape), atol=ATOL
    )
    assert layer.weights == []


def test_positional_encoding_rejects_too_long_input():
    with pytest.raises(ValueError, match="max_length"):
        SinusoidalPositionalEncoding(max_length=4)(np.zeros((1, 5, 2), "float32"))


# --- Serialization --------------------------------------------------------------------------


def _assert_config_round_trip(layer, call):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    call(clone)
    _copy(layer, clone)
    np.testing.assert_allclose(call(clone), call(layer), atol=ATOL)


def test_config_round_trip(rng):
    x = _randn(rng, 2, 4, 3)
    dense = PerceptronDense(5, activation="tanh", use_bias=False, kernel_initializer="ones")
    dense(x)
    _assert_config_round_trip(dense, lambda layer: layer(x))

    cell = SimpleRNNCellScratch(4, activation="relu", use_bias=False)
    rnn = keras.layers.RNN(cell, return_sequences=True)
    rnn(x)
    _randomize(rnn, rng)
    _assert_config_round_trip(cell, lambda c: c(x[:, 0], [np.ones((2, 4), "float32")])[0])
    rnn_clone = keras.layers.RNN.from_config(rnn.get_config())
    assert isinstance(rnn_clone.cell, SimpleRNNCellScratch) and rnn_clone.cell.units == 4
    rnn_clone(x)
    _copy(rnn, rnn_clone)
    np.testing.assert_allclose(rnn_clone(x), rnn(x), atol=ATOL)

    q, v = _randn(rng, 2, 3, 6), _randn(rng, 2, 4, 5)
    mha = MultiHeadAttentionScratch(3, 2, value_dim=4, output_dim=7)
    mha(q, v)
    _randomize(mha, rng)
    _assert_config_round_trip(mha, lambda layer: layer(q, v, use_causal_mask=True))

    pe = SinusoidalPositionalEncoding(max_length=16)
    pe(x)
    _assert_config_round_trip(pe, lambda layer: layer(x))


def _assert_save_load(model, inputs, tmp_path):
    path = tmp_path / "model.keras"
    expected = model.predict(inputs, verbose=0)
    model.save(path)
    loaded = keras.models.load_model(path)  # classes are registered: no custom_objects needed
    got = loaded.predict(inputs, verbose=0)
    for a, b in zip(keras.tree.flatten(got), keras.tree.flatten(expected), strict=True):
        np.testing.assert_allclose(a, b, atol=ATOL)
    return loaded


def test_dense_and_rnn_save_load(rng, tmp_path):
    inp = keras.Input((5, 3))
    h = PerceptronDense(4, activation="relu")(inp)
    h = keras.layers.RNN(SimpleRNNCellScratch(6), return_sequences=True)(h)
    h = keras.layers.RNN(SimpleRNNCellScratch(2))(h)
    model = keras.Model(inp, h)
    _randomize(model, rng)
    loaded = _assert_save_load(model, _randn(rng, 2, 5, 3), tmp_path)
    assert isinstance(loaded.layers[1], PerceptronDense)
    assert isinstance(loaded.layers[2].cell, SimpleRNNCellScratch)


def test_attention_and_positional_encoding_save_load(rng, tmp_path):
    tokens = keras.Input((None, 8))
    memory = keras.Input((6, 5))
    mask = keras.Input((None, 6), dtype="bool")
    h = SinusoidalPositionalEncoding(max_length=32)(tokens)
    h = MultiHeadAttentionScratch(2, 4)(h, h, use_causal_mask=True)
    h, scores = MultiHeadAttentionScratch(2, 3, value_dim=2)(
        h, memory, attention_mask=mask, return_attention_scores=True
    )
    model = keras.Model([tokens, memory, mask], [h, scores])
    _randomize(model, rng)
    keep = np.ones((2, 4, 6), bool)
    keep[1, :, 3:] = False
    inputs = [_randn(rng, 2, 4, 8), _randn(rng, 2, 6, 5), keep]
    loaded = _assert_save_load(model, inputs, tmp_path)
    out, scores = loaded.predict(inputs, verbose=0)
    assert out.shape == (2, 4, 8) and scores.shape == (2, 2, 4, 6)
    assert np.all(scores[1, :, :, 3:] == 0.0)


def test_mha_trains_in_graph_mode(rng):
    """Every weight that can matter receives a gradient under compile/fit (tf.function).

    The key bias is the exception, in Keras too: it adds ``q . b`` to every logit of a
    query row alike, and softmax ignores a constant shift, so its gradient is exactly 0.
    """
    inp = keras.Input((4, 6))
    layer = MultiHeadAttentionScratch(2, 3)
    model = keras.Model(inp, layer(inp, inp, use_causal_mask=True))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = {w.path: w.numpy().copy() for w in layer.weights}
    model.fit(_randn(rng, 8, 4, 6), _randn(rng, 8, 4, 6), epochs=1, batch_size=8, verbose=0)
    changed = {w.path: not np.allclose(before[w.path], w.numpy()) for w in layer.weights}
    assert changed.pop(layer.key_bias.path) is False
    assert all(changed.values()), changed
