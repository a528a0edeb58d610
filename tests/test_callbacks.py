"""The callback stack: each callback alone, the assembled order, and what runs record."""

import math

import keras
import mlflow
import numpy as np
import pytest
from keras import ops
from mlflow.tracking import MlflowClient

from tfdl import train
from tfdl.callbacks.dropout_schedule import DropoutScheduler
from tfdl.callbacks.gradients import GradientHealth, layer_gradient_norms
from tfdl.callbacks.lr_schedules import OneCycle, make_lr_schedule
from tfdl.callbacks.schema import CallbacksConfig, DropoutSchedule
from tfdl.callbacks.stack import ORDER, build_callbacks
from tfdl.config import validate
from tfdl.layers import ScheduledDropout

from .conftest import DIVERGING, TINY


def pipeline(**sections):
    return validate({**TINY, **sections})


def metric(run_id, key):
    return [m.value for m in MlflowClient().get_metric_history(run_id, key)]


# ------------------------------------------------------------------------ scheduled dropout


class ZeroFraction(keras.layers.Layer):
    """Records, inside the training step, the fraction of its inputs that are zero."""

    def build(self, input_shape):
        self.fraction = self.add_weight(shape=(), initializer="zeros", trainable=False)

    def call(self, x, training=False):
        if training:
            self.fraction.assign(ops.mean(ops.cast(ops.equal(x, 0.0), "float32")))
        return x


def test_scheduled_dropout_is_identity_at_inference_and_scales_in_training():
    layer = ScheduledDropout(0.4, seed=1)
    x = np.ones((200, 100), "float32")
    np.testing.assert_array_equal(layer(x, training=False), x)
    y = ops.convert_to_numpy(layer(x, training=True))
    kept = y[y != 0]
    assert abs((y == 0).mean() - 0.4) < 0.02
    np.testing.assert_allclose(kept, 1 / 0.6, rtol=1e-6)  # inverted dropout keeps the mean


def test_the_zeroed_fraction_tracks_the_scheduled_rate_every_epoch():
    """The schedule is real: inside the compiled training step, without recompiling."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((256,))
    probe = ZeroFraction()
    x = probe(ScheduledDropout(0.0, name="drop")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    model.compile(optimizer="sgd", loss="mse")
    schedule = DropoutSchedule(kind="linear", start=0.1, end=0.7, epochs=4)
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((float(probe.fraction.numpy()), logs["dropout_rate"]))

    data = np.ones((512, 256), "float32"), np.zeros((512, 1), "float32")
    model.fit(
        *data,
        batch_size=256,
        epochs=6,
        verbose=0,
        callbacks=[DropoutScheduler(schedule.rate), Record()],
    )
    expected = [0.1, 0.25, 0.4, 0.55, 0.7, 0.7]
    np.testing.assert_allclose([rate for _, rate in seen], expected, atol=1e-9)
    np.testing.assert_allclose([frac for frac, _ in seen], expected, atol=0.02)


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("constant", [0.5, 0.5, 0.5, 0.5, 0.5]),
        ("linear", [0.5, 0.4, 0.3, 0.3, 0.3]),
        ("step", [0.5, 0.5, 0.3, 0.3, 0.3]),
        ("cosine", [0.5, 0.4, 0.3, 0.3, 0.3]),
    ],
)
def test_dropout_schedule_formulas(kind, expected):
    schedule = DropoutSchedule(kind=kind, start=0.5, end=0.3, epochs=2)
    np.testing.assert_allclose([schedule.rate(e) for e in range(5)], expected, atol=1e-12)


def test_a_dropout_schedule_needs_dropout_layers(store):
    from tfdl.errors import ConfigError

    with pytest.raises(ConfigError, match="callbacks.dropout_schedule: the model has no dropout"):
        train(pipeline(callbacks={"dropout_schedule": {}}))


# ---------------------------------------------------------------------- learning-rate schedules


def test_one_cycle_rises_to_max_lr_then_anneals():
    sched = OneCycle(
        max_lr=1.0, total_steps=100, pct_start=0.3, div_factor=10, final_div_factor=100
    )
    lrs = np.array([float(sched(s)) for s in range(101)])
    assert lrs[0] == pytest.approx(0.1) and lrs[30] == pytest.approx(1.0)
    assert lrs[100] == pytest.approx(0.1 / 100)
    assert np.all(np.diff(lrs[:31]) > 0) and np.all(np.diff(lrs[30:]) < 0)
    assert lrs[15] == pytest.approx(1.0 + (0.1 - 1.0) * 0.5 * (1 + math.cos(math.pi * 0.5)))


@pytest.mark.parametrize(
    "section, formula",
    [
        ({"kind": "exponential", "decay_rate": 0.5}, lambda step, spe: 0.1 * 0.5 ** (step / spe)),
        (
            {"kind": "piecewise", "boundaries": [1, 2], "values": [0.1, 0.05, 0.01]},
            lambda step, spe: 0.1 if step <= spe else 0.05 if step <= 2 * spe else 0.01,
        ),
        (
            {"kind": "cosine", "warmup_epochs": 1},
            lambda step, spe: (
                0.1 * step / spe
                if step < spe
                else 0.1 * 0.5 * (1 + math.cos(math.pi * (step - spe) / (3 * spe)))
            ),
        ),
    ],
)
def test_a_schedule_logs_the_learning_rates_of_its_formula(store, section, formula):
    cfg = pipeline(
        train={**TINY["train"], "epochs": 4, "optimizer": {"name": "sgd", "learning_rate": 0.1}},
        callbacks={"lr_schedule": section},
    )
    result = train(cfg)
    n_train = int(MlflowClient().get_run(result.run_id).data.params["data_info.n_train"])
    spe = math.ceil(n_train / 64)  # steps per epoch at batch size 64
    logged = metric(result.run_id, "learning_rate")
    # the rate in effect at the end of epoch e: the schedule at step (e + 1) * spe
    np.testing.assert_allclose(logged, [formula((e + 1) * spe, spe) for e in range(4)], rtol=1e-5)


def test_lr_schedule_and_plateau_cannot_both_own_the_rate():
    with pytest.raises(ValueError, match="keep one"):
        CallbacksConfig(lr_schedule={"kind": "cosine"}, reduce_lr_on_plateau={})


def test_make_lr_schedule_counts_epochs_in_steps():
    cfg = CallbacksConfig(
        lr_schedule={"kind": "piecewise", "boundaries": [2], "values": [1.0, 0.5]}
    )
    sched = make_lr_schedule(cfg.lr_schedule, 1.0, steps_per_epoch=10, epochs=5)
    assert float(sched(20)) == 1.0 and float(sched(21)) == 0.5


# --------------------------------------------------------------------------- gradient health


def test_layer_gradient_norms_match_a_manual_computation():
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, name="a"), keras.layers.Dense(1, name="b")]
    )
    model.compile(loss="mse")
    x, y = (
        np.random.default_rng(0).normal(size=(8, 3)).astype("float32"),
        np.ones((8, 1), "float32"),
    )
    norms = layer_gradient_norms(model, x, y)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x) - y))
    ka, ba, kb, bb = tape.gradient(loss, model.trainable_variables)
    expected_a = np.sqrt(np.sum(ka.numpy() ** 2) + np.sum(ba.numpy() ** 2))
    assert set(norms) == {"a", "b"} and norms["a"] == pytest.approx(expected_a, rel=1e-5)


def test_deep_sigmoid_layers_vanish_where_relu_he_does_not(store):
    """The lecture's point, as logged metrics: early sigmoid layers get tiny gradients."""

    def first_over_last(activation, initializer):
        cfg = pipeline(
            model={
                "arch": "deep_mlp",
                "units": [32] * 8,
                "activation": activation,
                "initializer": initializer,
            },
            train={**TINY["train"], "epochs": 1},
            callbacks={"gradient_health": {"vanish_below": 1e-4}},
        )
        run_id = train(cfg).run_id
        run = MlflowClient().get_run(run_id)
        first, last = run.data.metrics["grad_norm/dense_0"], run.data.metrics["grad_norm/dense_7"]
        return first / last, run.data.tags

    sigmoid_ratio, sigmoid_tags = first_over_last("sigmoid", "glorot_uniform")
    relu_ratio, relu_tags = first_over_last("relu", "he_normal")
    assert sigmoid_ratio < 0.01 < relu_ratio
    assert "dense_0 (epoch 1)" in sigmoid_tags["tfdl.gradients.vanishing"]
    assert "tfdl.gradients.vanishing" not in relu_tags


def test_gradient_health_flags_exploding_layers():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, name="out")])
    model.compile(loss="mse")
    health = GradientHealth(
        np.ones((4, 3), "float32") * 1e4,
        np.zeros((4, 1), "float32"),
        vanish_below=1e-9,
        explode_above=1.0,
    )
    health.set_model(model)
    logs = {}
    health.on_epoch_end(0, logs)
    assert logs["grad_norm/out"] > 1.0
    assert health.tags() == {"tfdl.gradients.exploding": "out (epoch 1)"}


# ----------------------------------------------------------------------- the stack and runs


def test_the_stack_is_assembled_in_one_fixed_order(tmp_path):
    cfg = CallbacksConfig(
        dropout_schedule={},
        reduce_lr_on_plateau={},
        early_stopping={},
        model_checkpoint={},
        gradient_health={},
        hidden_units={},
    )
    probe = (np.zeros((2, 3), "float32"), np.zeros((2, 1), "float32"))
    stack = build_callbacks(cfg, log=lambda logs, epoch: None, run_dir=tmp_path, probe=probe)
    assert list(stack.named) == list(ORDER)
    names = [type(c).__name__ for c in stack.callbacks]
    assert names == [
        "EpochTimer",
        "LearningRateLogger",
        "DropoutScheduler",
        "GeneralisationGap",
        "GradientHealth",
        "HiddenUnits",
        "FailOnNaN",
        "ReduceLROnPlateau",
        "EarlyStopping",
        "Checkpoint",
        "MetricsLogger",
        "Backup",
    ]
    off = build_callbacks(CallbacksConfig(terminate_on_nan=False, backup=False))
    assert [type(c).__name__ for c in off.callbacks] == [
        "EpochTimer",
        "LearningRateLogger",
        "GeneralisationGap",
    ]


def test_a_run_logs_gap_dropout_rate_stopping_and_the_best_model(store):
    cfg = pipeline(
        model={"arch": "deep_mlp", "units": [16], "dropout": 0.5},
        train={**TINY["train"], "epochs": 12},
        callbacks={
            "dropout_schedule": {"kind": "linear", "start": 0.5, "end": 0.0, "epochs": 2},
            "early_stopping": {"patience": 1, "min_delta": 100, "restore_best_weights": False},
            "model_checkpoint": {},
        },
    )
    result = train(cfg)
    run = MlflowClient().get_run(result.run_id)
    loss, val_loss = metric(run.info.run_id, "loss"), metric(run.info.run_id, "val_loss")
    np.testing.assert_allclose(
        metric(run.info.run_id, "gap_loss"), np.array(val_loss) - np.array(loss), rtol=1e-5
    )
    assert metric(run.info.run_id, "dropout_rate") == [0.5, 0.25]
    assert run.data.metrics["best_epoch"] == 1 and run.data.metrics["stopped_epoch"] == 2
    best = mlflow.artifacts.download_artifacts(f"{run.info.artifact_uri}/best_model/best.keras")
    assert keras.saving.load_model(best).output_shape == (None, 10)


def test_a_nan_loss_ends_the_run_failed_with_the_reason(store):
    cfg = validate(DIVERGING)
    with pytest.raises(FloatingPointError):
        train(cfg)
    (run,) = MlflowClient().search_runs(
        [MlflowClient().get_experiment_by_name("test").experiment_id]
    )
    assert run.info.status == "FAILED"
    assert run.data.tags["tfdl.error"].startswith("FloatingPointError: loss became")
    assert "at epoch 1, batch" in run.data.tags["tfdl.error"]
