"""Lecture 2: recurrent neural networks as many-to-one sequence classifiers.

A sequence x_1..x_T goes through a stack of recurrent layers; the last hidden state h_T
summarises it and a dense head turns it into the task's prediction. The three builders
differ only in the cell: vanilla RNN, LSTM or GRU.
"""

import keras

from tfdl.layers import SimpleRNNCellScratch
from tfdl.models.heads import as_sequence, inputs_for, output_head
from tfdl.models.heads import dropout as dropout_layer


def _sequence_classifier(
    spec, make_layer, *, name, units, bidirectional, dropout, dense_units
) -> keras.Model:
    """Inputs -> recurrent stack -> dense head -> output, for any recurrent cell.

    `make_layer(width, return_sequences, name)` builds one recurrent layer. Every layer but
    the last returns the whole sequence h_1..h_T so the next layer has one input per step
    (a deep RNN); the last returns only h_T (many-to-one).
    """
    inputs, x = inputs_for(spec, masked=True)  # the steps after a text's end are skipped
    x = as_sequence(x, name)
    for i, width in enumerate(units):
        last = i == len(units) - 1
        layer = make_layer(width, not last, f"{name}_{i}")
        if bidirectional:
            # One pass forwards and one backwards in time, outputs concatenated: 2 * width.
            layer = keras.layers.Bidirectional(layer, name=f"bidirectional_{i}")
        x = layer(x)
        if dropout:
            x = dropout_layer(dropout, name=f"dropout_{i}")(x)
    for i, width in enumerate(dense_units):
        x = keras.layers.Dense(width, activation="relu", name=f"dense_{i}")(x)
        if dropout:
            x = dropout_layer(dropout, name=f"dense_dropout_{i}")(x)
    return keras.Model(inputs, output_head(x, spec), name=name)


def build_simple_rnn(
    spec,
    *,
    units=(64,),
    bidirectional: bool = False,
    dropout: float = 0.0,
    dense_units=(),
    impl: str = "keras",
) -> keras.Model:
    """Vanilla RNN, many-to-one: h_t = tanh(W_hh h_{t-1} + W_xh x_t + b), y = f(h_T).

    The same weights are applied at every time step. Backpropagation through time
    multiplies by W_hh once per step, so gradients from early steps tend to vanish: the
    motivation for the LSTM and the GRU. `impl="scratch"` runs the lecture's cell
    (`tfdl.layers.SimpleRNNCellScratch`) inside `keras.layers.RNN`; `"keras"` uses
    `keras.layers.SimpleRNN`. Both hold kernel, recurrent_kernel, bias in that order.
    """

    def make_layer(width, return_sequences, name):
        if impl == "scratch":
            cell = SimpleRNNCellScratch(width, name=f"{name}_cell")
            return keras.layers.RNN(cell, return_sequences=return_sequences, name=name)
        return keras.layers.SimpleRNN(width, return_sequences=return_sequences, name=name)

    return _sequence_classifier(
        spec,
        make_layer,
        name="simple_rnn",
        units=units,
        bidirectional=bidirectional,
        dropout=dropout,
        dense_units=dense_units,
    )


def build_lstm(
    spec,
    *,
    units=(64,),
    bidirectional: bool = False,
    dropout: float = 0.0,
    dense_units=(),
) -> keras.Model:
    """LSTM, many-to-one: a gated cell state c_t carries information across time.

        f_t = sigmoid(W_f [h_{t-1}, x_t] + b_f)     forget gate
        i_t = sigmoid(W_i [h_{t-1}, x_t] + b_i)     input gate
        o_t = sigmoid(W_o [h_{t-1}, x_t] + b_o)     output gate
        c_t = f_t * c_{t-1} + i_t * tanh(W_c [h_{t-1}, x_t] + b_c)
        h_t = o_t * tanh(c_t),                      y = f(h_T)

    The additive update of c_t lets gradients flow back through time without repeated
    multiplication by W_hh, which mitigates vanishing gradients.
    """

    def make_layer(width, return_sequences, name):
        return keras.layers.LSTM(width, return_sequences=return_sequences, name=name)

    return _sequence_classifier(
        spec,
        make_layer,
        name="lstm",
        units=units,
        bidirectional=bidirectional,
        dropout=dropout,
        dense_units=dense_units,
    )


def build_gru(
    spec,
    *,
    units=(64,),
    bidirectional: bool = False,
    dropout: float = 0.0,
    dense_units=(),
) -> keras.Model:
    """GRU, many-to-one: two gates, no separate cell state (lighter than the LSTM).

        z_t = sigmoid(W_z [h_{t-1}, x_t] + b_z)              update gate
        r_t = sigmoid(W_r [h_{t-1}, x_t] + b_r)              reset gate
        h~_t = tanh(W_h [r_t * h_{t-1}, x_t] + b_h)
        h_t = (1 - z_t) * h_{t-1} + z_t * h~_t,              y = f(h_T)

    As in the LSTM, the interpolation between h_{t-1} and h~_t keeps gradients alive.
    (keras.layers.GRU swaps the roles of z_t and 1 - z_t and applies r_t after multiplying
    h_{t-1}: the same family of functions.)
    """

    def make_layer(width, return_sequences, name):
        return keras.layers.GRU(width, return_sequences=return_sequences, name=name)

    return _sequence_classifier(
        spec,
        make_layer,
        name="gru",
        units=units,
        bidirectional=bidirectional,
        dropout=dropout,
        dense_units=dense_units,
    )
