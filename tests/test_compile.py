"""Optimizers, losses and metrics from the config, resolved against the task."""

import keras
import pytest

from tfdl.compile import make_metrics, make_optimizer, resolve
from tfdl.config import validate
from tfdl.data.spec import DataSpec
from tfdl.errors import ConfigError

from .conftest import TINY

SPECS = {
    "binary": DataSpec(input_shape=(2,), task="binary", num_classes=2),
    "multiclass": DataSpec(input_shape=(4,), task="multiclass", num_classes=3),
    "regression": DataSpec(input_shape=(4,), task="regression"),
}


def pipeline(**sections):
    return validate({**TINY, **sections})


@pytest.mark.parametrize(
    "task, model, loss, metric",
    [
        ("binary", {"arch": "perceptron"}, "binary_crossentropy", "accuracy"),
        ("binary", {"arch": "perceptron", "activation": "tanh"}, "mse", "accuracy"),
        ("multiclass", {"arch": "deep_mlp"}, "sparse_categorical_crossentropy", "accuracy"),
        ("regression", {"arch": "deep_mlp"}, "mse", "mae"),
    ],
)
def test_auto_loss_and_metrics_follow_the_task(task, model, loss, metric):
    cfg = resolve(pipeline(model=model), SPECS[task])
    assert cfg.train.loss == loss and cfg.train.metrics == [metric]
    assert cfg.data.seed == cfg.train.seed  # the logged config names the split's seed


def test_incompatible_choices_are_config_errors():
    with pytest.raises(ConfigError, match="model.arch: perceptron cannot learn the multiclass"):
        resolve(pipeline(model={"arch": "perceptron"}), SPECS["multiclass"])
    with pytest.raises(ConfigError, match="train.loss: 'mse' does not fit a multiclass"):
        resolve(pipeline(train={"loss": "mse"}), SPECS["multiclass"])
    with pytest.raises(ConfigError, match="train.metrics: 'auc' does not fit a regression"):
        resolve(pipeline(train={"metrics": ["auc"]}), SPECS["regression"])
    with pytest.raises(
        ConfigError, match="callbacks.early_stopping.monitor: 'val_auc' is not logged"
    ):
        resolve(pipeline(callbacks={"early_stopping": {"monitor": "val_auc"}}), SPECS["multiclass"])


@pytest.mark.parametrize(
    "section, cls, attrs",
    [
        ({"name": "sgd"}, keras.optimizers.SGD, {"momentum": 0.0, "nesterov": False}),
        (
            {"name": "momentum", "momentum": 0.8},
            keras.optimizers.SGD,
            {"momentum": 0.8, "nesterov": False},
        ),
        ({"name": "nesterov"}, keras.optimizers.SGD, {"momentum": 0.9, "nesterov": True}),
        ({"name": "adagrad"}, keras.optimizers.Adagrad, {"initial_accumulator_value": 0.1}),
        ({"name": "adadelta", "rho": 0.9}, keras.optimizers.Adadelta, {"rho": 0.9}),
        ({"name": "rmsprop", "momentum": 0.5}, keras.optimizers.RMSprop, {"momentum": 0.5}),
        (
            {"name": "adam", "amsgrad": True},
            keras.optimizers.Adam,
            {"amsgrad": True, "beta_1": 0.9},
        ),
        ({"name": "adamw", "weight_decay": 0.01}, keras.optimizers.AdamW, {"weight_decay": 0.01}),
        ({"name": "adam", "clipnorm": 1.0}, keras.optimizers.Adam, {"clipnorm": 1.0}),
        ({"name": "sgd", "clipvalue": 0.5}, keras.optimizers.SGD, {"clipvalue": 0.5}),
        ({"name": "sgd", "global_clipnorm": 2.0}, keras.optimizers.SGD, {"global_clipnorm": 2.0}),
    ],
)
def test_optimizers_by_name(section, cls, attrs):
    cfg = pipeline(train={"optimizer": {**section, "learning_rate": 0.05}})
    opt = make_optimizer(cfg.train.optimizer)
    assert type(opt) is cls
    assert float(opt.learning_rate) == pytest.approx(0.05)
    for name, value in attrs.items():
        assert getattr(opt, name) == pytest.approx(value), name


def test_clipping_really_clips():
    """A huge gradient moves a weight by at most lr * clipvalue."""
    opt = make_optimizer(
        pipeline(
            train={"optimizer": {"name": "sgd", "learning_rate": 1.0, "clipvalue": 0.5}}
        ).train.optimizer
    )
    w = keras.Variable([0.0])
    opt.apply_gradients([(keras.ops.convert_to_tensor([1000.0]), w)])
    assert float(w.numpy()[0]) == pytest.approx(-0.5)


def test_metrics_are_named_as_configured():
    metrics = make_metrics(["accuracy", "auc", "precision", "recall"], "binary", one_hot=False)
    assert [m.name for m in metrics] == ["accuracy", "auc", "precision", "recall"]
    assert isinstance(metrics[0], keras.metrics.BinaryAccuracy)
    one_hot = make_metrics(["accuracy"], "multiclass", one_hot=True)[0]
    assert isinstance(one_hot, keras.metrics.CategoricalAccuracy)


@pytest.mark.parametrize(
    "steps, chosen",
    [
        (1, 1),
        (40, 40),  # an epoch of at most AUTO_STEPS: the whole epoch in one call
        (128, 128),
        (150, 75),  # the largest divisor up to 128
        (256, 128),
        (258, 86),
        (131, 128),  # a prime: no divisor of at least 32, so 128 and a stream per epoch
        (2 * 127, 127),
        (3 * 131, 128),
    ],
)
def test_auto_steps_per_execution_divides_the_epoch_where_it_can(steps, chosen):
    from types import SimpleNamespace

    from tfdl.compile import MIN_DIVISOR, steps_per_execution

    got = steps_per_execution(SimpleNamespace(steps_per_execution="auto"), steps)
    assert got == chosen
    assert (
        steps % got == 0 or got == 128 and not any(steps % d == 0 for d in range(MIN_DIVISOR, 129))
    )
    fixed = SimpleNamespace(steps_per_execution=7)
    assert steps_per_execution(fixed, steps) == 7  # a configured number is kept
