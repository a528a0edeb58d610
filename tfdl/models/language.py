"""Lecture 2 / lab 1: a character language model, and sampling text from a language model."""

import keras
import numpy as np

from tfdl.errors import ConfigError
from tfdl.layers import ScheduledDropout
from tfdl.models.heads import dropout as dropout_layer

RECURRENT_CELLS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
DROPOUT = (keras.layers.Dropout, ScheduledDropout)
SHOWN_VOCABULARY = 60  # characters quoted in an error message


def build_char_lm(
    spec, *, embedding_dim: int = 64, cell: str = "lstm", units=(256,), dropout: float = 0.0
) -> keras.Model:
    """Next-character model: p(x_{t+1} | x_1..x_t) = softmax(W_hy h_t + b_y) at every step t.

    e_t = E[x_t] embeds each character id in `embedding_dim` dimensions; stacked LSTM (or
    GRU) layers carry the state h_t = f(h_{t-1}, e_t) and return it at every step; a dense
    softmax over the vocabulary reads each h_t. Dropout follows each recurrent layer. The
    input takes sequences of any length, so a prompt of a few characters can be fed.
    """
    vocabulary_size = len(spec.vocabulary)
    inputs = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocabulary_size, embedding_dim, name="embedding")(inputs)
    recurrent = RECURRENT_CELLS[cell]
    for i, width in enumerate(units):
        x = recurrent(width, return_sequences=True, name=f"{cell}_{i}")(x)
        if dropout:
            x = dropout_layer(dropout, name=f"dropout_{i}")(x)
    # float32 even under mixed precision: a float16 softmax over the vocabulary underflows
    outputs = keras.layers.Dense(
        vocabulary_size, activation="softmax", dtype="float32", name="output"
    )(x)
    return keras.Model(inputs, outputs, name="char_lm")


def generate_text(model, spec, *, prompt: str, length: int, temperature: float, seed: int) -> str:
    """`prompt` followed by `length` characters sampled one at a time from the model.

    Each next character is drawn from softmax(log p / temperature), p the model's
    probabilities after the text so far: a temperature below 1 sharpens them towards the
    likeliest character (greedy as it nears 0), above 1 flattens them. A recurrent model
    (embedding, LSTM/GRU, dense) is stepped one character at a time with its state carried
    over, as in the course's lab; any other model (a Transformer decoder) sees the last
    `spec.input_shape[0]` characters, the longest context it was trained on. An empty prompt
    starts from "X" (ABC tunes open with "X:") when the vocabulary has it, else from a
    random character; that first character counts towards `length`.
    """
    if length < 0:
        raise ConfigError("length", f"{length} is out of range", ">= 0")
    if not temperature > 0:
        raise ConfigError("temperature", f"{temperature} is out of range", "> 0")
    vocabulary = list(spec.vocabulary)
    index = {c: i for i, c in enumerate(vocabulary)}
    unknown = sorted(set(prompt) - set(index))
    if unknown:
        raise ConfigError(
            "prompt",
            f"characters not in the model's vocabulary: {_show(unknown)}",
            _show(vocabulary),
        )
    if not length:
        return prompt
    rng = np.random.default_rng(seed)
    ids = [index[c] for c in prompt]
    generated = []
    if not ids:
        start = index["X"] if "X" in index else int(rng.integers(len(vocabulary)))
        ids.append(start)
        generated.append(start)
    predict = _recurrent_predictor(model) or _window_predictor(model, int(spec.input_shape[0]))
    while len(generated) < length:
        token = _sample(predict(ids), temperature, rng)
        ids.append(token)
        generated.append(token)
    return prompt + "".join(vocabulary[i] for i in generated)


def _window_predictor(model, context: int):
    """p(next | text) from the model run on the last `context` ids of the text.

    One traced graph serves every window length: calling the model eagerly would run
    its layers op by op in Python, and `predict` per step pays its setup every time.
    """
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, None], tf.int32)], reduce_retracing=True)
    def last_step(window):
        return model(window, training=False)[0, -1, :]

    def predict(ids):
        window = tf.constant([ids[-context:]], dtype=tf.int32)
        return last_step(window).numpy().astype(np.float64)

    return predict


def _recurrent_predictor(model):
    """p(next | text) from a chain of embedding, recurrent, dropout and dense layers, fed one
    id at a time with the recurrent states carried over: O(1) per character, where rerunning
    the whole window costs O(window). None for any other model.

    Stepping the cells h_t = f(h_{t-1}, e_t) from zero states gives the very probabilities
    the model computes for the whole text at once.
    """
    import tensorflow as tf

    layers = [la for la in model.layers if not isinstance(la, keras.layers.InputLayer)]
    chain = (keras.layers.Embedding, keras.layers.RNN, DROPOUT, keras.layers.Dense)
    rnns = [la for la in layers if isinstance(la, keras.layers.RNN)]
    if (
        len(model.inputs) != 1
        or not rnns
        or not all(isinstance(la, chain) for la in layers)
        or any(la.go_backwards or not la.return_sequences for la in rnns)
    ):
        return None

    @tf.function
    def step(token, states):
        x, carried = token, []
        for layer in layers:
            if isinstance(layer, keras.layers.RNN):
                x, new = layer.cell(x, states[len(carried)], training=False)
                carried.append(list(new) if isinstance(new, (list, tuple)) else [new])
            elif not isinstance(layer, DROPOUT):  # dropout: identity at inference
                x = layer(x)
        return x[0], carried

    states = [list(la.cell.get_initial_state(batch_size=1)) for la in rnns]
    fed, p = 0, None

    def predict(ids):
        nonlocal states, fed, p
        for token in ids[fed:]:
            p, states = step(tf.constant([token], dtype=tf.int32), states)
        fed = len(ids)
        return p.numpy().astype(np.float64)

    return predict


def _sample(p: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """One draw from softmax(log p / temperature)."""
    logits = np.log(np.maximum(p, 1e-30)) / temperature
    weights = np.exp(logits - logits.max())  # the max is 1: no overflow at low temperature
    return int(rng.choice(len(weights), p=weights / weights.sum()))


def _show(chars) -> str:
    """Characters as a short, one-line list: newlines and spaces written as escapes."""
    shown = " ".join(
        repr(c) if not c.isprintable() or c.isspace() else c for c in chars[:SHOWN_VOCABULARY]
    )
    more = len(chars) - SHOWN_VOCABULARY
    return shown + (f" ... ({more} more)" if more > 0 else "")
