"""Recurrent sequence classifiers: shapes per task, stacking, bidirectional, impls, training."""

import keras
import numpy as np
import pytest

from tfdl.data.spec import DataSpec
from tfdl.layers import ScheduledDropout, SimpleRNNCellScratch
from tfdl.models.rnn import build_gru, build_lstm, build_simple_rnn

T = 7  # time steps of the toy sequences
MULTICLASS = DataSpec(input_shape=(T, 2), task="multiclass", num_classes=5)
BINARY = DataSpec(input_shape=(T, 2), task="binary", num_classes=2)
REGRESSION = DataSpec(input_shape=(T, 2), task="regression")
FLAT = DataSpec(input_shape=(T,), task="multiclass", num_classes=3)  # MNIST-1D read flat

BUILDERS = {"simple_rnn": build_simple_rnn, "lstm": build_lstm, "gru": build_gru}
CELLS = {"simple_rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}


def sequences(spec, n=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, *spec.input_shape)).astype("float32")


def recurrent_layers(model):
    """The recurrent layers in order, each unwrapped from Bidirectional if wrapped."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Bidirectional):
            layer = layer.forward_layer
        if isinstance(layer, keras.layers.RNN):
            found.append(layer)
    return found


@pytest.mark.parametrize("arch", BUILDERS)
@pytest.mark.parametrize(
    "spec, units, activation",
    [(MULTICLASS, 5, "softmax"), (BINARY, 1, "sigmoid"), (REGRESSION, 1, "linear")],
    ids=["multiclass", "binary", "regression"],
)
def test_output_follows_the_task(arch, spec, units, activation):
    model = BUILDERS[arch](spec, units=(6,))
    assert model.output_shape == (None, units)
    assert model.layers[-1].activation.__name__ == activation
    out = model(sequences(spec)).numpy()
    assert out.shape == (4, units)
    if activation == "softmax":
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    if activation == "sigmoid":
        assert ((out > 0) & (out < 1)).all()


@pytest.mark.parametrize("arch", BUILDERS)
def test_stacking_gives_a_deep_rnn(arch):
    model = BUILDERS[arch](MULTICLASS, units=(8, 6, 4))
    layers = recurrent_layers(model)
    assert [type(layer) for layer in layers] == [CELLS[arch]] * 3
    assert [layer.units for layer in layers] == [8, 6, 4]
    # every layer but the last hands the whole sequence h_1..h_T to the next one
    assert [layer.return_sequences for layer in layers] == [True, True, False]
    assert [tuple(layer.output.shape) for layer in layers] == [
        (None, T, 8),
        (None, T, 6),
        (None, 4),
    ]


@pytest.mark.parametrize("arch", BUILDERS)
def test_bidirectional_doubles_the_width(arch):
    model = BUILDERS[arch](MULTICLASS, units=(8, 4), bidirectional=True)
    wrappers = [la for la in model.layers if isinstance(la, keras.layers.Bidirectional)]
    assert len(wrappers) == 2
    for wrapper in wrappers:
        assert isinstance(wrapper.forward_layer, CELLS[arch])
        assert wrapper.backward_layer.go_backwards and not wrapper.forward_layer.go_backwards
    assert tuple(wrappers[0].output.shape) == (None, T, 16)
    assert tuple(wrappers[1].output.shape) == (None, 8)
    assert model.get_layer("output").kernel.shape == (8, 5)
    plain = BUILDERS[arch](MULTICLASS, units=(8, 4))
    assert not any(isinstance(la, keras.layers.Bidirectional) for la in plain.layers)


@pytest.mark.parametrize("arch", BUILDERS)
def test_dropout_and_dense_head(arch):
    model = BUILDERS[arch](MULTICLASS, units=(6, 4), dropout=0.3, dense_units=(10,))
    drops = [la for la in model.layers if isinstance(la, ScheduledDropout)]
    assert len(drops) == 3 and all(d.initial_rate == 0.3 for d in drops)  # after each layer
    dense = [la for la in model.layers if isinstance(la, keras.layers.Dense)]
    assert [d.units for d in dense] == [10, 5]
    assert dense[0].activation.__name__ == "relu"
    none = BUILDERS[arch](MULTICLASS, units=(6, 4))
    assert not any(isinstance(la, ScheduledDropout) for la in none.layers)
    # dropout only acts while training
    x = sequences(MULTICLASS)
    np.testing.assert_allclose(model(x, training=False), model(x, training=False))
    assert not np.allclose(model(x, training=True), model(x, training=False))


@pytest.mark.parametrize("arch", BUILDERS)
def test_a_flat_input_is_read_as_one_feature_per_step(arch):
    model = BUILDERS[arch](FLAT, units=(4,))
    first = recurrent_layers(model)[0]
    assert tuple(first.input.shape) == (None, T, 1)
    assert model(sequences(FLAT)).shape == (4, 3)


def test_impl_picks_the_cell():
    keras_model = build_simple_rnn(MULTICLASS, units=(4,), impl="keras")
    scratch = build_simple_rnn(MULTICLASS, units=(4,), impl="scratch")
    assert type(recurrent_layers(keras_model)[0]) is keras.layers.SimpleRNN
    (layer,) = recurrent_layers(scratch)
    assert type(layer) is keras.layers.RNN and isinstance(layer.cell, SimpleRNNCellScratch)


@pytest.mark.parametrize("units, bidirectional", [((5,), False), ((5, 3), False), ((5, 3), True)])
def test_scratch_impl_equals_keras(units, bidirectional):
    def build(impl):
        keras.utils.set_random_seed(0)
        return build_simple_rnn(
            MULTICLASS, units=units, bidirectional=bidirectional, dense_units=(4,), impl=impl
        )

    reference, scratch = build("keras"), build("scratch")
    rng = np.random.default_rng(1)
    # random weights everywhere (biases too, which start at zero) so the check has teeth
    reference.set_weights([rng.normal(scale=0.5, size=w.shape) for w in reference.get_weights()])
    scratch.set_weights(reference.get_weights())
    x = sequences(MULTICLASS, n=6)
    np.testing.assert_allclose(scratch(x), reference(x), atol=1e-5)


def test_scratch_model_survives_a_keras_file(tmp_path):
    model = build_simple_rnn(
        FLAT, units=(4, 3), bidirectional=True, dropout=0.1, dense_units=(5,), impl="scratch"
    )
    rng = np.random.default_rng(2)
    model.set_weights([rng.normal(scale=0.5, size=w.shape) for w in model.get_weights()])
    path = tmp_path / "rnn.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(recurrent_layers(loaded)[0].cell, SimpleRNNCellScratch)
    x = sequences(FLAT)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


@pytest.mark.parametrize(
    "arch, hparams",
    [("simple_rnn", {"impl": "scratch"}), ("lstm", {}), ("gru", {"bidirectional": True})],
)
def test_learns_the_sign_of_a_sum(arch, hparams):
    """Many-to-one toy task: is x_1 + ... + x_T positive? Needs the whole sequence."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 6, 1)).astype("float32")
    y = (x.sum(axis=(1, 2)) > 0).astype("float32")[:, None]
    keras.utils.set_random_seed(0)
    spec = DataSpec(input_shape=(6, 1), task="binary", num_classes=2)
    model = BUILDERS[arch](spec, units=(8,), **hparams)
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="binary_crossentropy")
    loss = keras.losses.BinaryCrossentropy()  # eager: spares compiling a test function
    before = float(loss(y, model(x)))
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    assert float(loss(y, model(x))) < 0.5 * before
