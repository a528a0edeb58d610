"""`tfdl compare`: runs written straight into a temporary store, no model trained."""

import io
import subprocess
import sys

import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from tfdl.compare import compare, curves_plot, direction, render
from tfdl.errors import ConfigError

# name: (arch, units, per-epoch val_loss, per-epoch val_accuracy, kind)
RUNS = {
    "cnn-small": ("cnn2d", "16", [0.9, 0.5, 0.6], [0.6, 0.8, 0.78], None),
    "cnn-big": ("cnn2d", "64", [0.8, 0.4, 0.3, 0.35], [0.7, 0.85, 0.9, 0.88], None),
    "mlp": ("deep_mlp", "16", [1.0, 0.7], [0.5, 0.7], "trial"),
}


def _run(client, exp_id, name, params, metrics, tags=None):
    run = client.create_run(exp_id, run_name=name, tags=tags or {})
    rid = run.info.run_id
    batch = [
        Metric(key, value, 1000 + step, step)
        for key, values in metrics.items()
        for step, value in enumerate(values, start=1)
    ]
    params = [Param(k, v) for k, v in params.items()]
    client.log_batch(rid, metrics=batch, params=params)
    client.set_terminated(rid, "FINISHED")
    return rid


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three training runs in `digits` (one a trial), a search parent and an lr-find run
    (both to be left out), and one run in a second experiment. One store for the module:
    creating a store's tables takes seconds, and no test here writes to it."""
    store = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
        yield _fill(store)


def _fill(store):
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    exp = client.create_experiment("digits")
    ids = {}
    for name, (arch, units, val_loss, val_acc, kind) in RUNS.items():
        params = {"model.arch": arch, "model.units": units, "train.epochs": "5"}
        params["data_info.n_train"] = "1000"
        metrics = {"loss": [v + 0.1 for v in val_loss], "val_loss": val_loss}
        metrics["val_accuracy"] = val_acc
        ids[name] = _run(client, exp, name, params, metrics, {"tfdl.kind": kind} if kind else {})
    _run(
        client,
        exp,
        "search-x",
        {"model.arch": "cnn2d"},
        {"val_loss": [0.01]},
        {"tfdl.kind": "search"},
    )
    _run(
        client,
        exp,
        "lr-find",
        {"model.arch": "resnet"},
        {"loss": [0.001]},
        {"tfdl.kind": "lr_find"},
    )
    other = client.create_experiment("moons")
    _run(client, other, "moons-run", {"model.arch": "perceptron"}, {"loss": [0.7, 0.6]})
    return ids


def test_table_has_differing_params_final_best_and_is_sorted(runs):
    table, curves = compare(["digits"])
    assert list(table["run"]) == ["cnn-big", "cnn-small", "mlp"]  # best val_loss first
    assert "model.arch" in table and "model.units" in table
    assert "train.epochs" not in table and "data_info.n_train" not in table  # equal in all
    assert "experiment" not in table  # one experiment
    row = table.set_index("run").loc["cnn-big"]
    assert row["final_val_loss"] == pytest.approx(0.35)
    assert row["best_val_loss"] == pytest.approx(0.3)
    assert row["epochs"] == 4 and row["status"] == "FINISHED" and row["duration_s"] >= 0
    assert set(curves.columns) >= {"run", "epoch", "value"}
    assert len(curves) == 3 + 4 + 2
    small = curves[curves["run"] == "cnn-small"]
    assert list(small["epoch"]) == [1, 2, 3] and list(small["value"]) == [0.9, 0.5, 0.6]


def test_accuracy_is_maximised(runs):
    table, _ = compare(["digits"], metric="val_accuracy")
    assert direction("val_accuracy") == "max" and direction("val_loss") == "min"
    assert list(table["run"]) == ["cnn-big", "cnn-small", "mlp"]
    small = table.set_index("run").loc["cnn-small"]
    assert small["best_val_accuracy"] == pytest.approx(0.8)
    assert small["final_val_accuracy"] == pytest.approx(0.78)


def test_filter_and_all_experiments(runs):
    table, curves = compare(filter_string="params.model.arch = 'cnn2d'")
    assert sorted(table["run"]) == ["cnn-big", "cnn-small"]
    assert "model.arch" not in table  # equal in the runs the filter keeps
    assert set(curves["run"]) == {"cnn-big", "cnn-small"}
    every, _ = compare()  # default: all experiments; moons has no val_loss -> NaN, last
    assert "experiment" in every and every["run"].iloc[-1] == "moons-run"
    assert {"search-x", "lr-find"}.isdisjoint(every["run"])
    loss, _ = compare(["moons"])  # no val_loss anywhere: loss is the default
    assert "best_loss" in loss and loss["best_loss"].iloc[0] == pytest.approx(0.6)


def test_formats(runs):
    table, _ = compare(["digits"])
    text = render(table, "table")
    assert "cnn-big" in text and "best_val_loss" in text.splitlines()[0]
    back = pd.read_csv(io.StringIO(render(table, "csv")))
    assert list(back.columns) == list(table.columns)
    pd.testing.assert_series_equal(back["best_val_loss"], table["best_val_loss"])
    assert list(back["epochs"]) == list(table["epochs"])
    lines = render(table, "markdown").splitlines()
    assert lines[0].startswith("| run |") and lines[1].startswith("|---")
    assert len(lines) == 2 + len(table) and all(line.endswith("|") for line in lines)
    with pytest.raises(ConfigError) as err:
        render(table, "html")
    assert err.value.field == "format"


def test_curves_plot_is_png(runs, tmp_path):
    _, curves = compare(["digits"])
    path = curves_plot(curves, "val_loss", tmp_path / "out" / "curves.png")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000


@pytest.mark.parametrize(
    "kwargs, field, words",
    [
        ({"experiments": ["nope"]}, "experiment", "digits, moons"),
        ({"metric": "val_auc"}, "metric", "val_accuracy"),
        ({"filter_string": "params.model.arch == "}, "filter", "MLflow search syntax"),
        ({"filter_string": "params.model.arch = 'rnn'"}, "filter", "no training run"),
    ],
)
def test_errors(runs, kwargs, field, words):
    with pytest.raises(ConfigError) as err:
        compare(**kwargs)
    assert err.value.field == field and words in str(err.value)
    assert "\n" not in str(err.value)


def test_empty_store_is_not_created(store):
    with pytest.raises(ConfigError) as err:
        compare()
    assert err.value.field == "experiment"
    assert not (store / "mlflow.db").exists()


def test_no_tensorflow(runs):
    code = (
        "import sys; from tfdl.compare import compare, render; "
        "table, _ = compare(); render(table, 'markdown'); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_the_command_prints_the_table_and_saves_the_plot(runs, tmp_path, capsys):
    from tfdl.cli import main

    plot = tmp_path / "curves.png"
    args = ["compare", "--experiment", "digits", "--format", "csv", "--plot", str(plot)]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0].startswith("run,") and len(out.strip().splitlines()) == 1 + 3
    assert str(plot) in err and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["compare", "--metric", "val_f1"]) == 2
    assert capsys.readouterr().err.startswith("error: --metric:")


def test_a_run_still_running_is_compared_with_its_age(store):
    # A live training in another terminal, or one a kill -9 left: no end time yet.
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    exp = client.create_experiment("live")
    _run(client, exp, "done", {"model.units": "8"}, {"val_loss": [0.5, 0.4]})
    live = client.create_run(exp, run_name="training").info.run_id
    client.log_batch(
        live, metrics=[Metric("val_loss", 0.6, 1000, 1)], params=[Param("model.units", "16")]
    )
    table, _ = compare(["live"])
    row = table.set_index("run").loc["training"]
    assert row["status"] == "RUNNING" and row["duration_s"] >= 0
    assert table.set_index("run").loc["done", "status"] == "FINISHED"
    out = subprocess.run(
        [sys.executable, "-m", "tfdl.cli", "compare", "--experiment", "live"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "RUNNING" in out.stdout, out.stderr
