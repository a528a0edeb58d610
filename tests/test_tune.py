"""Keras Tuner searches: every trial a child run, the grid complete, resume, chief/workers."""

import json
import signal
import time
from datetime import date

import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tfdl.cli import main
from tfdl.config import load_tuning, validate
from tfdl.search import planned
from tfdl.store import open_sqlite

from .conftest import TINY, free_port, start_tfdl

SPACE = {
    "model.units": {"type": "choice", "values": [[8], [16]]},
    "model.activation": {"type": "choice", "values": ["relu", "tanh"]},
}


@pytest.fixture
def job(tmp_path, write_pipeline):
    """Write a search over the tiny pipeline; returns its path."""
    pipeline = write_pipeline({**TINY, "tracking": {"experiment": "search"}})

    def write(name="search", **settings):
        path = tmp_path / f"{name}.yaml"
        content = {"pipeline": str(pipeline), "epochs": 2, "space": SPACE, **settings}
        content.setdefault("objective", {"metric": "val_accuracy", "direction": "max"})
        path.write_text(yaml.safe_dump(content))
        return path

    return write


def runs(client=None):
    client = client or MlflowClient()
    exp = client.get_experiment_by_name("search")
    found = client.search_runs([exp.experiment_id]) if exp else []
    parents = [r for r in found if r.data.tags.get("tfdl.kind") == "search"]
    children = [r for r in found if r.data.tags.get("tfdl.kind") == "trial"]
    return parents, children


def best_of(client, run, metric):
    return max(m.value for m in client.get_metric_history(run.info.run_id, metric))


def test_a_random_search_records_every_trial(store, job, capsys):
    space = {
        **SPACE,
        "train.optimizer.learning_rate": {
            "type": "float",
            "min": 1e-3,
            "max": 3e-2,
            "sampling": "log",
        },
    }
    assert main(["tune", str(job(space=space, max_trials=3))]) == 0
    out = capsys.readouterr().out
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("trial")] == [
        "trial 1 of 3",
        "trial 2 of 3",
        "trial 3 of 3",
    ]
    client = MlflowClient()
    (parent,), children = runs(client)
    assert parent.info.status == "FINISHED" and len(children) == 3
    assert all(c.info.status == "FINISHED" for c in children)
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)

    table = mlflow.artifacts.load_text(f"{parent.info.artifact_uri}/trials.csv").splitlines()
    assert len(table) == 1 + 3
    for child in children:  # the child's params are its trial's values
        p = child.data.params
        assert json.loads(p["model.units"]) in ([8], [16]) and p["model.activation"] in (
            "relu",
            "tanh",
        )
        assert 1e-3 <= float(p["train.optimizer.learning_rate"]) <= 3e-2
        assert child.data.params["model.units"] in "\n".join(table)

    # the parent's best is the best child (Keras Tuner scores a trial by its best epoch)
    best = max(children, key=lambda c: best_of(client, c, "val_accuracy"))
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(
        best_of(client, best, "val_accuracy")
    )
    for key in SPACE:
        assert parent.data.tags[f"best.{key}"] == best.data.params[key]
    pipeline = yaml.safe_load(
        mlflow.artifacts.load_text(f"{parent.info.artifact_uri}/best_pipeline.yaml")
    )
    cfg = validate(pipeline)  # ready to run
    assert cfg.model.units == json.loads(best.data.params["model.units"])
    model = mlflow.tensorflow.load_model(f"runs:/{parent.info.run_id}/best_model")
    assert model.output_shape == (None, 10)
    png = mlflow.artifacts.download_artifacts(f"{parent.info.artifact_uri}/objective.png")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_grid_search_visits_every_combination_once(store, job):
    space = {**SPACE, "model.batch_norm": {"type": "bool"}}
    path = job(tuner="grid", max_trials=50, epochs=1, space=space)
    assert main(["tune", str(path)]) == 0
    (parent,), children = runs()
    assert planned(load_tuning(path)[0]) == 8
    combos = [
        (
            c.data.params["model.units"],
            c.data.params["model.activation"],
            c.data.params["model.batch_norm"],
        )
        for c in children
    ]
    assert len(combos) == 8 and len(set(combos)) == 8
    # re-running a finished search runs nothing again
    assert main(["tune", str(job(tuner="grid", max_trials=50, epochs=1, space=space))]) == 0
    parents, again = runs()
    assert len(parents) == 1 and len(again) == 8
    models = mlflow.search_logged_models(
        experiment_ids=[parent.info.experiment_id], output_format="list"
    )
    assert [m.source_run_id for m in models] == [parent.info.run_id]  # the best model, once


def test_mixed_precision_trains_in_float16_and_leaves_the_policy_as_it_was(store, job):
    import keras

    assert main(["tune", str(job(max_trials=1, epochs=1, mixed_precision=True))]) == 0
    assert keras.mixed_precision.global_policy().name == "float32"
    (parent,), (child,) = runs()
    model = mlflow.tensorflow.load_model(f"runs:/{parent.info.run_id}/best_model")
    assert model.get_layer("dense_0").compute_dtype == "float16"
    assert model.get_layer("output").compute_dtype == "float32"  # probabilities stay precise
    assert child.info.status == "FINISHED"


@pytest.mark.parametrize("tuner", ["hyperband", "bayesian"])
def test_hyperband_and_bayesian_searches_record_each_trial(tuner, store, job):
    assert main(["tune", str(job(tuner=tuner, max_trials=3, epochs=2, hyperband_factor=2))]) == 0
    client = MlflowClient()
    (parent,), children = runs(client)
    table = mlflow.artifacts.load_text(f"{parent.info.artifact_uri}/trials.csv").splitlines()
    assert len(children) == len(table) - 1 >= 2
    best = max(best_of(client, c, "val_accuracy") for c in children)
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(best)


@pytest.mark.parametrize(
    "change, field, allowed",
    [
        ({"space": {"model.unitz": {"type": "bool"}}}, "space.model.unitz", "model.units"),
        (
            {"space": {"model.units": {"type": "choice", "values": []}}},
            "space.model.units.values",
            "at least 1",
        ),
        (
            {"space": {"model.dropout": {"type": "float", "min": 0.4, "max": 0.1}}},
            "space.model.dropout",
            None,
        ),
        (
            {
                "tuner": "grid",
                "space": {"model.dropout": {"type": "float", "min": 0.0, "max": 0.5}},
            },
            "space.model.dropout",
            "a step",
        ),
        (
            {"space": {"model.dropout": {"type": "float", "min": 0.0, "max": 1.5, "step": 0.5}}},
            "space.model.dropout",
            "< 1.0",
        ),
        ({"tuner": "evolution"}, "tuner", "random, grid, hyperband, bayesian"),
        (
            {"objective": {"metric": "val_f1", "direction": "max"}},
            "objective.metric",
            "val_accuracy",
        ),
        ({"pipeline": "nowhere.yaml"}, "pipeline", None),
        (  # YAML reads an unquoted date as a date, which no override or JSON can carry
            {"space": {"tracking.run_name": {"type": "choice", "values": [date(2021, 1, 1)]}}},
            "space.tracking.run_name",
            None,
        ),
    ],
)
def test_bad_searches_are_one_line_errors_before_anything_runs(
    change, field, allowed, job, tmp_path, monkeypatch, capsys
):
    folder = tmp_path / "store"
    folder.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
    assert main(["tune", str(job(**change))]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {field}:"), line
    if allowed:
        assert allowed in line.split("; allowed: ")[1]
    assert list(folder.iterdir()) == []  # no store, no run


@pytest.mark.slow
def test_an_interrupted_search_finishes_the_rest_without_duplicates(tmp_path, job):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = job(max_trials=4, epochs=3)
    client = MlflowClient(uri)
    open_sqlite(uri)  # polling a store the command is still creating would race it
    proc = start_tfdl("tune", path, uri=uri)
    deadline = time.time() + 240
    while time.time() < deadline:
        time.sleep(0.5)
        if (tmp_path / "mlflow.db").exists() and client.get_experiment_by_name("search"):
            finished = [c for c in runs(client)[1] if c.info.status == "FINISHED"]
            if len(finished) >= 2:
                break
    proc.kill()  # no clean-up at all: the trial in progress stays RUNNING
    proc.communicate(timeout=60)
    assert 2 <= len([c for c in runs(client)[1] if c.info.status == "FINISHED"]) < 4

    again = start_tfdl("tune", path, uri=uri)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    parents, children = runs(client)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    trial_ids = [c.data.tags["tfdl.trial_id"] for c in children]
    assert len(children) == 4 and sorted(trial_ids) == sorted(set(trial_ids))
    assert all(c.info.status == "FINISHED" for c in children)
    for child in children:  # every epoch of every trial logged once
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "loss")]
        assert steps == [1, 2, 3]


@pytest.mark.slow
def test_a_chief_and_two_workers_run_each_trial_once(tmp_path, job):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path, port = job(tuner="grid", max_trials=4, epochs=1), str(free_port())
    chief = start_tfdl("tune", path, "--chief", "--oracle-port", port, uri=uri)
    time.sleep(2)
    workers = [
        start_tfdl("tune", path, "--worker", i, "--oracle-port", port, uri=uri) for i in (0, 1)
    ]
    try:
        outputs = [w.communicate(timeout=600) for w in workers]
        out, err = chief.communicate(timeout=120)
    finally:
        for p in (chief, *workers):
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
    assert chief.returncode == 0, err
    assert all(w.returncode == 0 for w in workers), [e for _, e in outputs]
    ran = [line for o, _ in outputs for line in o.splitlines() if line.startswith("trial")]
    assert len(ran) == 4  # the workers ran the four trials between them
    parents, children = runs(MlflowClient(uri))
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    combos = {(c.data.params["model.units"], c.data.params["model.activation"]) for c in children}
    assert len(children) == 4 and len(combos) == 4


def test_a_changed_search_is_refused_until_overwritten(store, job, capsys):
    assert main(["tune", str(job(max_trials=1, epochs=1))]) == 0
    changed = str(job(max_trials=1, epochs=1, seed=7))
    assert main(["tune", changed]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: search: the search changed since its last run; "
        "allowed: --overwrite, to start afresh"
    ]
    (parent,), _ = runs()
    assert parent.info.status == "FINISHED"  # the refusal touched nothing
    assert main(["tune", changed, "--overwrite"]) == 0
    (parent,), children = runs()
    assert parent.data.params["seed"] == "7" and len(children) == 1


def test_a_search_registers_its_best_model_as_champion_and_names_its_trials(store, job):
    assert main(["tune", str(job(max_trials=2, epochs=1, register_as="digits-search"))]) == 0
    (parent,), children = runs()
    client = MlflowClient()
    champion = client.get_model_version_by_alias("digits-search", "champion")
    assert str(champion.version) == "1" and champion.run_id == parent.info.run_id
    names = sorted(c.info.run_name for c in children)
    assert all(n.startswith("trial-") and "units=[" in n and "activation=" in n for n in names)
    assert len(set(names)) == 2  # each trial's values tell it apart
    # The search's run can stand for its best model the way a training run does.
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"config.yaml", "data_spec.json", "best_pipeline.yaml"} <= artifacts
    assert main(["train", "--resume", parent.info.run_id]) == 2  # a search is no training
