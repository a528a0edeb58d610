"""Builders: shapes follow the task, hyperparameters take effect, seeds fix the weights."""

import inspect

import keras
import numpy as np
import pytest

from tfdl.data.spec import DataSpec
from tfdl.layers import ScheduledDropout
from tfdl.models import build_model, get_builder
from tfdl.models.schema import ARCHITECTURES

BINARY = DataSpec(input_shape=(2,), task="binary", num_classes=2)
DIGITS = DataSpec(input_shape=(8, 8, 1), task="multiclass", num_classes=10)
REGRESSION = DataSpec(input_shape=(5,), task="regression")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_builder_defaults_equal_the_schema(arch):
    """A notebook call and a YAML file with the same settings build the same model."""
    cls = ARCHITECTURES[arch]
    params = inspect.signature(get_builder(arch)).parameters
    schema = cls(arch=arch).hparams()
    assert set(schema) == set(params) - {"spec"}
    for name, value in schema.items():
        default = params[name].default
        assert (list(default) if isinstance(default, tuple) else default) == value, name


def test_perceptron_is_one_neuron():
    model = build_model(ARCHITECTURES["perceptron"](arch="perceptron"), BINARY)
    assert model.count_params() == 3  # w0, w1, w2
    assert model.layers[-1].activation.__name__ == "sigmoid"
    x = np.array([[1.0, 2.0]], "float32")
    w, b = model.layers[-1].get_weights()
    expected = 1 / (1 + np.exp(-(b + x @ w)))
    np.testing.assert_allclose(model(x).numpy(), expected, rtol=1e-6)


def test_perceptron_activation_and_regression():
    tanh = build_model(ARCHITECTURES["perceptron"](arch="perceptron", activation="tanh"), BINARY)
    assert tanh.layers[-1].activation.__name__ == "tanh"
    reg = build_model(ARCHITECTURES["perceptron"](arch="perceptron"), REGRESSION)
    assert reg.output_shape == (None, 1) and reg.layers[-1].activation.__name__ == "linear"


def test_deep_mlp_layers_follow_the_config():
    cfg = ARCHITECTURES["deep_mlp"](
        arch="deep_mlp",
        units=[32, 16, 8],
        activation="tanh",
        initializer="glorot_normal",
        dropout=0.25,
        batch_norm=True,
    )
    model = build_model(cfg, DIGITS)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in dense] == [32, 16, 8, 10]
    assert all(not d.use_bias for d in dense[:-1])  # batch norm's beta replaces the bias
    assert all(type(d.kernel_initializer).__name__ == "GlorotNormal" for d in dense[:-1])
    assert (
        sum(isinstance(la, ScheduledDropout) and la.initial_rate == 0.25 for la in model.layers)
        == 3
    )
    assert sum(isinstance(la, keras.layers.BatchNormalization) for la in model.layers) == 3
    assert dense[-1].activation.__name__ == "softmax" and model.output_shape == (None, 10)
    probs = model(np.random.default_rng(0).normal(size=(4, 8, 8, 1)).astype("float32"))
    np.testing.assert_allclose(probs.numpy().sum(axis=1), 1.0, rtol=1e-5)


def test_same_seed_same_initial_weights():
    cfg = ARCHITECTURES["deep_mlp"](arch="deep_mlp", units=[8])

    def weights(seed):
        keras.utils.set_random_seed(seed)
        return build_model(cfg, BINARY).get_weights()

    a, b, c = weights(1), weights(1), weights(2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize(
    "arch, hparams",
    [
        ("perceptron", {}),
        ("multi_output_perceptron", {}),
        ("single_layer_net", {"units": 7, "activation": "tanh"}),
        ("deep_mlp", {"units": [9, 5], "activation": "sigmoid", "batch_norm": True}),
    ],
)
def test_scratch_dense_layers_compute_what_keras_does(arch, hparams):
    """impl: scratch swaps in the lecture's dense layer; with Keras's weights, same outputs."""
    spec = BINARY if arch == "perceptron" else DIGITS
    cls = ARCHITECTURES[arch]
    keras.utils.set_random_seed(0)
    lib = build_model(cls(arch=arch, impl="keras", **hparams), spec)
    scratch = build_model(cls(arch=arch, impl="scratch", **hparams), spec)
    assert any(type(la).__name__ == "PerceptronDense" for la in scratch.layers)
    assert not any(type(la).__name__ == "PerceptronDense" for la in lib.layers)
    scratch.set_weights(lib.get_weights())
    x = np.random.default_rng(1).normal(size=(6, *spec.input_shape)).astype("float32")
    np.testing.assert_allclose(scratch(x).numpy(), lib(x).numpy(), atol=1e-5)


def test_multi_output_perceptron_has_no_hidden_layer():
    model = build_model(
        ARCHITECTURES["multi_output_perceptron"](arch="multi_output_perceptron"), DIGITS
    )
    assert model.count_params() == 64 * 10 + 10 and model.output_shape == (None, 10)


def test_residual_mlp_adds_a_skip_wherever_the_width_is_kept():
    cfg = ARCHITECTURES["deep_mlp"](arch="deep_mlp", units=[16, 16, 8, 8], residual=True)
    model = build_model(cfg, DIGITS)
    adds = [la.name for la in model.layers if isinstance(la, keras.layers.Add)]
    assert adds == ["skip_1", "skip_3"]  # 64 -> 16 and 16 -> 8 change the width: no skip
    plain = build_model(ARCHITECTURES["deep_mlp"](arch="deep_mlp", units=[16, 16]), DIGITS)
    assert not any(isinstance(la, keras.layers.Add) for la in plain.layers)


@pytest.mark.parametrize("how", ["standard", "minmax"])
@pytest.mark.parametrize(
    "arch, as_images", [("deep_mlp", False), ("cnn2d", True), ("resnet", True)]
)
def test_the_model_scales_raw_inputs_as_scikit_learn_does(how, arch, as_images):
    """The normalisation fitted on the training split is the model's first layer (Keras'
    Normalization), equal to scikit-learn's scaler on raw inputs; the rest of the model
    sees what it saw when the splits were scaled outside it."""
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    from tfdl.config import validate
    from tfdl.data.split import load_splits

    data = {"source": "digits", "as_images": as_images, "normalize": how}
    splits = load_splits(validate({"data": data, "model": {"arch": arch}}).data, 0)
    model = build_model(validate({"data": data, "model": {"arch": arch}}).model, splits.spec)
    first = model.layers[1]
    assert isinstance(first, keras.layers.Normalization) and first.name == "normalize"
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    scaler = {"standard": StandardScaler, "minmax": MinMaxScaler}[how]().fit(flat(splits.x_train))
    scaled = np.asarray(first(splits.x_test.astype("float32")))
    np.testing.assert_allclose(flat(scaled), scaler.transform(flat(splits.x_test)), atol=1e-5)
    again = keras.models.clone_model(model)  # rebuilt from its config alone
    np.testing.assert_allclose(np.asarray(again.layers[1](splits.x_test[:5])), scaled[:5])
