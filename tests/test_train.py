"""One run in-process: what MLflow records, callbacks, and how failures end a run."""

import io
import math

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tfdl import tracking, train
from tfdl.callbacks.stack import Stack
from tfdl.config import validate
from tfdl.prepared import prepare

from .conftest import TINY


def pipeline(**sections):
    return validate({**TINY, **sections})


def runs(experiment="test"):
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


def history(run_id, key):
    return [(m.step, m.value) for m in MlflowClient().get_metric_history(run_id, key)]


def test_a_run_records_config_metrics_artifacts_and_model(store):
    cfg = pipeline(
        train={**TINY["train"], "epochs": 3},
        tracking={"experiment": "test", "run_name": "tiny", "tags": {"team": "a"}},
    )
    result = train(prepare(cfg, path="pipelines/mlp.yaml"))
    run = MlflowClient().get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "tiny"
    p = run.data.params
    assert p["model.units"] == "[16]" and p["train.epochs"] == "3" and p["data.source"] == "digits"
    assert (
        p["train.loss"] == "sparse_categorical_crossentropy" and p["train.optimizer.name"] == "adam"
    )
    assert p["data.seed"] == "42" and int(p["data_info.n_train"]) > 1000
    tags = run.data.tags
    assert (
        tags["tfdl.arch"] == "deep_mlp" and tags["tfdl.dataset"] == "digits" and tags["team"] == "a"
    )
    assert tags["tfdl.pipeline"] == "pipelines/mlp.yaml"
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
        assert [s for s, _ in history(run.info.run_id, key)] == [1, 2, 3], key
    assert history(run.info.run_id, "val_loss")[-1][1] == pytest.approx(
        result.history["val_loss"][-1]
    )
    assert run.data.metrics["test_accuracy"] == pytest.approx(result.test_metrics["accuracy"])
    assert 0.5 < run.data.metrics["test_accuracy"] <= 1.0

    # artifacts live inside the store folder, whatever the working directory
    assert run.info.artifact_uri.startswith((store / "artifacts").as_uri())
    names = {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
    assert {"config.yaml", "history.csv", "model_summary.txt"} <= names
    logged = yaml.safe_load(mlflow.artifacts.load_text(f"{run.info.artifact_uri}/config.yaml"))
    assert logged["train"]["loss"] == "sparse_categorical_crossentropy" and logged["model"][
        "units"
    ] == [16]
    frame = pd.read_csv(
        io.StringIO(mlflow.artifacts.load_text(f"{run.info.artifact_uri}/history.csv"))
    )
    assert list(frame["epoch"]) == [1, 2, 3] and "val_accuracy" in frame
    summary = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/model_summary.txt")
    assert "dense_0" in summary

    pictures = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "pictures")}
    assert {"pictures/learning_curves.png", "pictures/confusion_matrix.png"} <= pictures
    counts = pd.read_csv(
        io.StringIO(
            mlflow.artifacts.load_text(f"{run.info.artifact_uri}/pictures/confusion_matrix.csv")
        ),
        index_col=0,
    )
    assert counts.to_numpy().sum() == int(p["data_info.n_test"])

    model = mlflow.tensorflow.load_model(f"runs:/{run.info.run_id}/model")
    x = np.random.default_rng(0).normal(size=(7, 64)).astype("float32")
    np.testing.assert_allclose(
        model.predict(x, verbose=0), result.model.predict(x, verbose=0), rtol=1e-5
    )
    pyfunc = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    assert pyfunc.metadata.get_input_schema().inputs[0].shape == (-1, 64)
    assert np.asarray(pyfunc.predict(x)).shape == (7, 10)


def test_early_stopping_and_plateau_show_in_the_logged_curves(store):
    cfg = pipeline(
        train={
            "epochs": 10,
            "batch_size": 64,
            "verbose": 0,
            "optimizer": {"name": "sgd", "learning_rate": 0.01},
        },
        callbacks={
            # min_delta no epoch can meet: the plateau starts at once
            "reduce_lr_on_plateau": {"factor": 0.5, "patience": 0, "min_delta": 100},
            "early_stopping": {"patience": 2, "min_delta": 100, "restore_best_weights": False},
        },
    )
    result = train(cfg)
    rates = [v for _, v in history(result.run_id, "learning_rate")]
    assert len(rates) == 3  # best at epoch 1, then two epochs without improvement
    np.testing.assert_allclose(rates, [0.01, 0.01, 0.005])


def test_a_failure_ends_the_run_failed_with_the_reason(store, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tracking, "log_results", boom)
    with pytest.raises(RuntimeError):
        train(pipeline())
    (run,) = runs()
    assert run.info.status == "FAILED"
    assert run.data.tags["tfdl.error"] == "RuntimeError: disk full"


def test_an_interrupt_ends_the_run_killed(store, monkeypatch):
    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    monkeypatch.setattr("tfdl.training.build_callbacks", lambda cfg, **kw: Stack([Interrupt()]))
    with pytest.raises(KeyboardInterrupt):
        train(pipeline())
    (run,) = runs()
    assert run.info.status == "KILLED"


def test_same_seed_same_run(store):
    a = train(pipeline())
    b = train(pipeline())
    c = train(pipeline(train={**TINY["train"], "seed": 7}))
    assert a.history["loss"] == b.history["loss"]
    assert a.history["loss"] != c.history["loss"]


def test_resume_refuses_finished_and_unknown_runs(store, capsys):
    from tfdl.cli import main

    run_id = train(pipeline()).run_id
    assert main(["train", "--resume", run_id]) == 2
    assert main(["train", "--resume", "0123abc"]) == 2
    assert main(["train", "--resume", run_id, "pipelines/mlp.yaml"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == (
        f"error: --resume: run {run_id} already FINISHED; "
        "allowed: a run that was interrupted (KILLED, or RUNNING after kill -9)"
    )
    assert lines[1].startswith("error: --resume: no run '0123abc' in the store")
    assert lines[2].startswith("error: --resume: takes no pipeline or overrides")


class Tally(keras.layers.Layer):
    """Passes its input on; in training, counts the rows and sums the features it saw."""

    def build(self, shape):
        self.rows = self.add_weight(shape=(), initializer="zeros", trainable=False)
        self.total = self.add_weight(shape=(shape[-1],), initializer="zeros", trainable=False)

    def call(self, x, training=False):
        if training:
            self.rows.assign_add(keras.ops.cast(keras.ops.shape(x)[0], "float32"))
            self.total.assign_add(keras.ops.sum(x, axis=0))
        return x


class EpochTally(keras.callbacks.Callback):
    def __init__(self, tally):
        super().__init__()
        self.tally, self.seen = tally, []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append((float(self.tally.rows.numpy()), self.tally.total.numpy().copy()))
        self.tally.rows.assign(0.0)
        self.tally.total.assign(np.zeros_like(self.tally.total.numpy()))


@pytest.mark.parametrize(
    "loop,input_", [("fit", "auto"), ("fit", "tf_data"), ("custom", "tf_data")]
)
@pytest.mark.parametrize("steps_per_execution", [1, 5, 7, "auto"])
def test_every_epoch_takes_one_pass_over_the_training_split(steps_per_execution, loop, input_):
    # input auto: fit gathers the batches from the split in memory (tfdl.resident), never
    # past an epoch's end. tf_data: 5 and "auto" divide the epoch's 20 steps, so fit reads
    # one repeated stream; 7 does not: a stream per epoch, or the last call of an epoch
    # would run past its end.
    from tfdl.compile import compile_model
    from tfdl.training import build, fit

    train_ = {**TINY["train"], "steps_per_execution": steps_per_execution, "loop": loop}
    train_["input"] = input_
    p = prepare(pipeline(train={**train_, "epochs": 3}))
    steps = math.ceil(len(p.splits.y_train) / p.cfg.train.batch_size)
    assert steps == p.steps_per_epoch == 20
    tally = Tally()
    model = compile_model(keras.Sequential([keras.Input((64,)), tally, build(p)]), p)
    counter = EpochTally(tally)
    fit(model, p, callbacks=[counter])
    assert int(model.optimizer.iterations.numpy()) == p.cfg.train.epochs * steps
    # Each epoch saw every training row once: their number and the sum of their features.
    total = p.splits.x_train.astype("float32").sum(axis=0)
    assert [rows for rows, _ in counter.seen] == [len(p.splits.y_train)] * 3
    for _, seen in counter.seen:
        np.testing.assert_allclose(seen, total, rtol=1e-4, atol=1e-2)
