"""`train.loop: custom`: the lecture's GradientTape loop against model.fit, and the stack,
resume, tracking and searches working through it."""

import keras
import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tfdl import api
from tfdl.cli import main
from tfdl.config import validate
from tfdl.prepared import prepare
from tfdl.training import build, fit

from .conftest import TINY


def pipeline(loop, **sections):
    return validate({**TINY, "train": {**TINY["train"], "loop": loop}, **sections})


def metric_steps(run_id, key):
    return [m.step for m in MlflowClient().get_metric_history(run_id, key)]


def five_epochs(loop, **model):
    cfg = pipeline(loop)
    cfg.train.input = "tf_data"  # fit reads the lecture loop's stream (not the held split)
    cfg.train.epochs = 5
    cfg.model = cfg.model.model_copy(update=model)
    p = prepare(cfg)
    history, _ = fit(build(p), p)
    return history.history


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_the_lecture_loop_follows_fit(dropout):
    by_fit, custom = five_epochs("fit", dropout=dropout), five_epochs("custom", dropout=dropout)
    assert sorted(by_fit) == sorted(custom)  # the same logs: metrics, val_, rates, gaps
    # Both read one repeated tf.data stream, epoch by epoch the same reshuffles, with the same
    # dropout masks and initial weights: the same algorithm gives the same numbers in every
    # epoch, up to float rounding.
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(custom[key], by_fit[key], rtol=1e-5, err_msg=key)
    for losses in (by_fit["loss"], custom["loss"]):
        assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses


def test_the_step_is_one_compiled_graph_as_fit_would_compile_it(monkeypatch):
    import tensorflow as tf

    compiled = []
    original = tf.function

    def spy(fn=None, **kwargs):
        if getattr(fn, "__name__", None) == "train_step":
            compiled.append(kwargs)
        return original(fn, **kwargs)

    monkeypatch.setattr(tf, "function", spy)
    for xla in (True, False):
        cfg = pipeline("custom")
        cfg.train.jit_compile, cfg.train.epochs = xla, 1
        p = prepare(cfg)
        fit(build(p), p)
    assert [kw["jit_compile"] for kw in compiled] == [True, False]


def test_early_stopping_and_plateau_work_in_the_lecture_loop(store):
    cfg = pipeline(
        "custom",
        callbacks={
            # min_delta no epoch can meet: the plateau starts at once
            "reduce_lr_on_plateau": {"factor": 0.5, "patience": 0, "min_delta": 100},
            "early_stopping": {"patience": 2, "min_delta": 100, "restore_best_weights": True},
        },
    )
    cfg.train.epochs, cfg.train.optimizer = (
        10,
        cfg.train.optimizer.model_copy(update={"learning_rate": 0.01}),
    )
    result = api.train(cfg)
    rates = [m.value for m in MlflowClient().get_metric_history(result.run_id, "learning_rate")]
    np.testing.assert_allclose(rates, [0.01, 0.01, 0.005])  # stopped after 3 epochs
    run = MlflowClient().get_run(result.run_id)
    assert run.data.metrics["stopped_epoch"] == 3 and run.data.metrics["best_epoch"] == 1


class Interrupt(keras.callbacks.Callback):
    """Ctrl-C at the end of epoch `at` (after the stack has backed the epoch up)."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.at:
            raise KeyboardInterrupt


def test_an_interrupted_custom_run_resumes_where_it_stopped(store):
    cfg = pipeline("custom")
    cfg.train.epochs = 5
    with pytest.raises(KeyboardInterrupt):
        api.train(cfg, callbacks=[Interrupt(at=2)])
    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("test").experiment_id])
    assert run.info.status == "KILLED" and metric_steps(run.info.run_id, "loss") == [1, 2]
    import json

    from tfdl.store import run_dir

    # Backups are taken on the logging beat: of epoch 1, and of epoch 2 if it ended late.
    stamp = run_dir(run.info.run_id) / "backup" / "training_metadata.json"
    backed_up = json.loads(stamp.read_text())["epoch"]
    assert backed_up in (1, 2)

    resumed = api.train(resume=run.info.run_id)
    assert resumed.run_id == run.info.run_id
    assert len(resumed.history["loss"]) == 5 - backed_up  # the epochs after the backup's
    run = client.get_run(run.info.run_id)
    assert run.info.status == "FINISHED" and run.data.params["train.loop"] == "custom"
    for key in ("loss", "val_accuracy", "learning_rate"):
        assert metric_steps(run.info.run_id, key) == [1, 2, 3, 4, 5], key
    assert run.data.metrics["test_accuracy"] > 0.8


def test_a_search_runs_its_trials_in_the_lecture_loop(store, tmp_path, write_pipeline, monkeypatch):
    import tfdl.gradient_descent as lecture

    calls = []
    original = lecture.gradient_descent
    monkeypatch.setattr(
        lecture, "gradient_descent", lambda *a, **kw: calls.append(1) or original(*a, **kw)
    )
    path = write_pipeline({**TINY, "tracking": {"experiment": "search"}})
    job = tmp_path / "search.yaml"
    space = {"model.units": {"type": "choice", "values": [[8], [16]]}}
    job.write_text(
        yaml.safe_dump(
            {
                "pipeline": str(path),
                "overrides": ["train.loop=custom"],
                "epochs": 2,
                "tuner": "grid",
                "space": space,
                "objective": {"metric": "val_accuracy", "direction": "max"},
            }
        )
    )
    assert main(["tune", str(job)]) == 0
    client = MlflowClient()
    found = client.search_runs([client.get_experiment_by_name("search").experiment_id])
    trials = [r for r in found if r.data.tags.get("tfdl.kind") == "trial"]
    assert len(trials) == 2
    for trial in trials:
        assert trial.info.status == "FINISHED"
        assert metric_steps(trial.info.run_id, "val_accuracy") == [1, 2]
    assert len(calls) == 2  # each trial trained by the lecture's loop
