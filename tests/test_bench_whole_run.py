"""The whole-run benchmark's bookkeeping on given figures, its order and failures with no
training, and the two scripts it times against tfdl, each run briefly as it is timed."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import run, whole_run

PROJECT = Path(__file__).resolve().parent.parent
# Each way by the module its command runs.
MODULES = {
    "tfdl.cli": "tfdl",
    "benchmarks.plain_digits": "plain",
    "benchmarks.autolog_digits": "autolog",
}


def repeat(tfdl, plain, autolog):
    return {"tfdl": tfdl, "plain": plain, "autolog": autolog}


def test_medians_and_ratios_of_an_even_number_of_repeats():
    runs = [repeat(10, 10, 30), repeat(12, 8, 30), repeat(11, 10, 20), repeat(13, 10, 30)]
    s = whole_run.summary(runs)
    assert s["repeats"] == 4 and s["runs_s"] == runs and s["epochs"] == 30
    assert s["median_s"] == {"tfdl": 11.5, "plain": 10.0, "autolog": 30.0}
    # Each repeat's ratio, then their median: 1.0, 1.5, 1.1, 1.3 -> 1.2 (the medians' own
    # ratio would be 1.15); 1/3, 0.4, 0.55, 0.433 -> 0.4167.
    assert s["tfdl/plain"] == pytest.approx(1.2)
    assert s["tfdl/autolog"] == pytest.approx((0.4 + 13 / 30) / 2)
    assert run.mark("tfdl/plain", s["tfdl/plain"]) == "MISSED"
    assert run.mark("tfdl/autolog", s["tfdl/autolog"]) == "ok"


def test_the_goals_hold_at_their_bounds_and_fail_past_them():
    assert run.mark("tfdl/plain", 1.0) == "ok" and run.mark("tfdl/plain", 1.01) == "MISSED"
    assert run.mark("tfdl/autolog", 0.5) == "ok" and run.mark("tfdl/autolog", 0.51) == "MISSED"


def test_the_results_page_shows_each_repeat_and_both_verdicts():
    s = whole_run.summary([repeat(9.0, 10.0, 16.0), repeat(11.0, 10.0, 20.0)])
    machine = dict.fromkeys(["date", "cpu", "cores", "gpu", "python"], "x")
    machine |= dict.fromkeys(["tensorflow", "keras", "keras-tuner", "mlflow", "numpy"], "x")
    stamp = {"whole_run": {"date": "x", "commit": "x"}}
    md = run.markdown({"machine": machine, "measured": stamp, "whole_run": s})
    assert "## A whole run against the scripts a user would write" in md
    assert "| tfdl | 10.0 | 9.0, 11.0 |" in md and "| autolog | 18.0 | 16.0, 20.0 |" in md
    goal = run.GOALS["tfdl/plain"][0]
    assert f"tfdl/plain: 1.00 (median of each repeat's ratio), met ({goal})." in md
    assert "tfdl/autolog: 0.56 (median of each repeat's ratio), MISSED" in md
    assert "whole_run" in run.SECTIONS


def test_the_ways_alternate_after_one_untimed_round(monkeypatch):
    calls = []

    def timed(command, env=None):
        calls.append((MODULES[command[2]], command, env))
        return float(len(calls))

    monkeypatch.setattr(whole_run, "timed", timed)
    s = whole_run.measure(2)
    assert [way for way, _, _ in calls] == ["tfdl", "plain", "autolog"] * 3
    # The first round is untimed; the figures are those of the next two, repeat by repeat.
    assert s["runs_s"] == [repeat(4.0, 5.0, 6.0), repeat(7.0, 8.0, 9.0)]
    assert s["repeats"] == 2
    way, command, env = calls[0]
    assert command[3:] == ["train", "pipelines/mlp.yaml", *whole_run.OVERRIDES]
    db = Path(env["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///"))
    autolog_store = Path(calls[2][1][calls[2][1].index("--store") + 1])
    assert db.parent.parent == autolog_store.parent != PROJECT  # one temporary folder
    assert calls[1][1][3:] == ["mlp", "--epochs", "30", "--no-stop"]


def test_the_repeats_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("TFDL_BENCH_REPEATS", raising=False)
    assert whole_run.repeats_wanted() == 3
    monkeypatch.setenv("TFDL_BENCH_REPEATS", "1")
    assert whole_run.repeats_wanted() == 1
    monkeypatch.setattr(whole_run, "timed", lambda command, env=None: 1.0)
    assert whole_run.measure()["repeats"] == 1
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("TFDL_BENCH_REPEATS", bad)
        with pytest.raises(ValueError, match="TFDL_BENCH_REPEATS"):
            whole_run.repeats_wanted()


def test_a_failing_child_raises_with_the_end_of_its_stderr():
    fails = "import sys; sys.stderr.write('x' * 5000 + 'the last words'); sys.exit(3)"
    with pytest.raises(RuntimeError, match="exited with 3: x+the last words$"):
        whole_run.timed([sys.executable, "-c", fails])
    assert 0 < whole_run.timed([sys.executable, "-c", "pass"]) < 60


# Runs plain_digits' main as its command line does, with model.fit wrapped to record what
# it is given and how many epochs it trains: the default run, then the benchmark's.
SPY = """
import json, sys
import keras
from benchmarks import plain_digits

fit, seen = keras.Model.fit, []

def spy(self, *args, **kwargs):
    history = fit(self, *args, **kwargs)
    given = [type(c).__name__ for c in kwargs.get("callbacks") or []]
    seen.append({"callbacks": given, "epochs": len(history.epoch)})
    return history

keras.Model.fit = spy
plain_digits.main(["mlp", "--epochs", "2"])
plain_digits.main(["mlp", "--epochs", "2", "--no-stop"])
print(json.dumps(seen))
"""


@pytest.mark.slow
def test_the_plain_script_without_stops_trains_every_epoch_with_no_callbacks():
    out = subprocess.run(
        [sys.executable, "-c", SPY], capture_output=True, text=True, cwd=PROJECT, check=True
    )
    default, no_stop, seen = (json.loads(line) for line in out.stdout.splitlines()[-3:])
    assert seen == [
        {"callbacks": ["EarlyStopping", "ReduceLROnPlateau", "TestAccuracy"], "epochs": 2},
        {"callbacks": [], "epochs": 2},
    ]
    assert len(default["epochs"]) == 2  # the default run's clock, as before
    assert no_stop["epochs_trained"] == 2
    assert no_stop["learning_rate"] == pytest.approx(0.001)
    assert 0 < no_stop["test_accuracy"] <= 1


def test_no_stop_refuses_a_goal():
    from benchmarks import plain_digits

    with pytest.raises(SystemExit) as refused:
        plain_digits.main(["mlp", "--no-stop", "--goal", "0.9"])
    assert refused.value.code == 2


@pytest.mark.slow
def test_the_autolog_script_records_one_finished_run_in_the_store_given(tmp_path):
    import mlflow

    store = tmp_path / "autolog"
    command = [sys.executable, "-m", "benchmarks.autolog_digits", "--store", str(store)]
    out = subprocess.run(
        [*command, "mlp", "--epochs", "2", "--no-stop"],
        capture_output=True,
        text=True,
        cwd=PROJECT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.splitlines()[-1])["epochs_trained"] == 2

    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("digits-mlp-autolog")
    assert Path(experiment.artifact_location.removeprefix("file://")) == store / "artifacts"
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.status == "FINISHED"
    assert found.data.params["epochs"] == "2"
    for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert [m.step for m in client.get_metric_history(found.info.run_id, metric)] == [0, 1]
    assert (store / "artifacts" / found.info.run_id).is_dir()
