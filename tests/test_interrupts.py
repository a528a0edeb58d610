"""Ctrl-C, SIGTERM and crashes in training and searches: no run is left RUNNING, every
one says why it ended, and running the command again completes the work."""

import os
import re
import signal
import subprocess
import sys
import time

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from tfdl import tracking
from tfdl.cli import main
from tfdl.signals import signals_deferred
from tfdl.store import open_sqlite

from .conftest import PROJECT, TINY, sigint_as_python_default, start_tfdl

# The CLI with the default store moved to a folder given first: a run and its resume as a
# user types them, with MLFLOW_TRACKING_URI unset, without touching the project's store.
MOVED_STORE = (
    "import sys; from pathlib import Path; import tfdl.store; "
    "tfdl.store.STORE = Path(sys.argv[1]); from tfdl.cli import main; sys.exit(main(sys.argv[2:]))"
)


def without_uri():
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def poll(condition, timeout=120, what="the moment to interrupt"):
    """Check `condition` every 0.2 s until it returns something true; return that."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"never reached: {what}")


def experiment_runs(client, name, db):
    exp = db.exists() and client.get_experiment_by_name(name)
    return client.search_runs([exp.experiment_id]) if exp else []


def all_runs(client):
    """Every active run of every experiment in the store."""
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids) if ids else []


def loss_steps(client, run_id):
    return [m.step for m in client.get_metric_history(run_id, "loss")]


# ------------------------------------------------------------------------------ training


@pytest.mark.slow
def test_ctrl_c_kills_a_training_and_a_resume_from_elsewhere_finishes_it(tmp_path, write_pipeline):
    folder, elsewhere = tmp_path / "store", tmp_path / "elsewhere"
    elsewhere.mkdir()
    db = folder / "mlflow.db"
    open_sqlite(f"sqlite:///{db}")  # polling it must not race the command to create it
    client = MlflowClient(f"sqlite:///{db}")
    # batch 4: a few hundred steps an epoch, so the signal lands mid-training
    path = write_pipeline({**TINY, "train": {**TINY["train"], "epochs": 4, "batch_size": 4}})
    proc = subprocess.Popen(
        [sys.executable, "-c", MOVED_STORE, folder, "train", path],
        cwd=PROJECT,
        env=without_uri(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=sigint_as_python_default,
    )

    def one_epoch_logged():
        found = experiment_runs(client, "test", db)
        return found and loss_steps(client, found[0].info.run_id) and found[0]

    run_id = poll(one_epoch_logged).info.run_id
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines() == [
        f"interrupted: run {run_id} is marked KILLED; continue it with tfdl train --resume {run_id}"
    ]
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and "interrupted" in run.data.tags["tfdl.error"]
    done = loss_steps(client, run_id)
    assert done == list(range(1, len(done) + 1)) and len(done) < 4
    assert (folder / "backups" / run_id / "backup" / "training_metadata.json").exists()

    # From another folder, no MLFLOW_TRACKING_URI: the resume must find the same store.
    out = subprocess.run(
        [sys.executable, "-c", MOVED_STORE, folder, "train", "--resume", run_id],
        cwd=elsewhere,
        env=without_uri(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and "tfdl.error" not in run.data.tags
    for key in ("loss", "val_loss"):
        assert [m.step for m in client.get_metric_history(run_id, key)] == [1, 2, 3, 4], key
    assert len(experiment_runs(client, "test", db)) == 1
    assert list(elsewhere.iterdir()) == []  # no stray store where the command ran


@pytest.fixture
def crash_at_epoch(monkeypatch):
    """Make training raise RuntimeError at the end of epoch `epoch` (1-based) of the runs
    `which(run_id)` picks: a crash inside model.fit, from a callback."""

    def install(epoch, which=lambda run_id: True):
        real = tracking.epoch_logger

        def crashing(run_id):
            log = real(run_id)

            def logger(logs, index):
                if index + 1 == epoch and which(run_id):
                    raise RuntimeError(f"injected crash at epoch {epoch}")
                log(logs, index)

            return logger

        monkeypatch.setattr(tracking, "epoch_logger", crashing)

    return install


def test_a_crash_in_training_fails_the_run_with_the_reason_and_one_line(
    store, write_pipeline, crash_at_epoch, capsys
):
    crash_at_epoch(2)
    path = write_pipeline({**TINY, "train": {**TINY["train"], "epochs": 3}})
    assert main(["train", str(path)]) == 1
    client = MlflowClient()
    (run,) = all_runs(client)
    run_id = run.info.run_id
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: training failed: RuntimeError: injected crash at epoch 2; "
        f"run {run_id} is marked FAILED, its error.txt has the traceback"
    ]
    assert run.info.status == "FAILED"
    assert run.data.tags["tfdl.error"] == "RuntimeError: injected crash at epoch 2"
    assert loss_steps(client, run_id) == [1]
    text = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/error.txt")
    assert text.startswith("Traceback") and "injected crash at epoch 2" in text


# ------------------------------------------------------------------------------ searches


def search_runs(client, db):
    found = experiment_runs(client, "search", db)
    parents = [r for r in found if r.data.tags.get("tfdl.kind") == "search"]
    children = {
        r.data.tags["tfdl.trial_id"]: r for r in found if r.data.tags.get("tfdl.kind") == "trial"
    }
    return parents, children


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_search_is_killed_and_the_same_command_finishes_it(
    signum, tmp_path, search_job
):
    """The first trial finishes, the second is cut off after an epoch. The rerun keeps the
    first trial's run, runs the second again (its killed attempt is deleted, so each trial
    has one run) and ends the same parent FINISHED."""
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    open_sqlite(uri)  # polling it must not race the command to create it
    client = MlflowClient(uri)
    # An epoch of a few hundred steps, one per call: the signal lands mid-trial.
    path = search_job(batch_size=4, epochs=3, steps_per_execution=1)
    proc = start_tfdl("tune", path, uri=uri)

    def second_trial_under_way():
        _, children = search_runs(client, db)
        first, second = children.get("0"), children.get("1")
        ready = first and first.info.status == "FINISHED" and second
        return ready and loss_steps(client, second.info.run_id) and (first, second)

    first, second = poll(second_trial_under_way)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines() == [
        "interrupted: the search and its current trial are marked KILLED; "
        "run the same command again to finish the search"
    ]
    assert "trial 1 of 2:" in out and "trial 2 of 2:" not in out  # the second never ended
    # Each epoch shows as it ends, with the trial's time and the search's time left.
    progress = r"trial 1 of 2, epoch 3/3: loss [\d.]+, val_loss [\d.]+, val_accuracy [\d.]+ "
    assert re.search(progress + r"\(\d+ s; search about \d+ (s|min) left\)", out), out
    (parent,), children = search_runs(client, db)
    assert parent.info.status == "KILLED" and "interrupted" in parent.data.tags["tfdl.error"]
    assert children["0"].info.status == "FINISHED"
    assert children["1"].info.status == "KILLED" and len(children) == 2
    assert all(r.info.status != "RUNNING" for r in experiment_runs(client, "search", db))

    again = start_tfdl("tune", path, uri=uri)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("trial")] == [
        "trial 2 of 2"  # the finished trial is not run again
    ]
    (reopened,), children = search_runs(client, db)
    assert reopened.info.run_id == parent.info.run_id and reopened.info.status == "FINISHED"
    assert "tfdl.error" not in reopened.data.tags
    assert "best_val_accuracy" in reopened.data.metrics
    assert children["0"].info.run_id == first.info.run_id  # kept, not rerun
    assert children["1"].info.run_id != second.info.run_id  # the rerun, recorded once
    assert all(c.info.status == "FINISHED" for c in children.values()) and len(children) == 2
    assert all(loss_steps(client, c.info.run_id) == [1, 2, 3] for c in children.values())
    assert client.get_run(second.info.run_id).info.lifecycle_stage == "deleted"


def test_a_crash_in_the_only_trial_fails_it_and_the_search(
    store, search_job, crash_at_epoch, capsys
):
    crash_at_epoch(2)
    assert main(["tune", str(search_job(max_trials=1))]) == 1
    client = MlflowClient()
    (parent,), children = search_runs(client, store / "mlflow.db")
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: the search failed: RuntimeError: no trial of the search finished; "
        f"run {parent.info.run_id} is marked FAILED, its error.txt has the traceback"
    ]
    (child,) = children.values()
    assert child.info.status == "FAILED"
    assert child.data.tags["tfdl.error"] == "RuntimeError: injected crash at epoch 2"
    assert parent.info.status == "FAILED"
    assert parent.data.tags["tfdl.error"] == "RuntimeError: no trial of the search finished"


def test_a_crash_in_one_trial_fails_only_that_trial(store, search_job, crash_at_epoch):
    def narrow(run_id):
        return MlflowClient().get_run(run_id).data.params["model.units"] == "[8]"

    crash_at_epoch(1, narrow)
    assert main(["tune", str(search_job())]) == 0
    client = MlflowClient()
    (parent,), children = search_runs(client, store / "mlflow.db")
    status = {c.data.params["model.units"]: c.info.status for c in children.values()}
    assert status == {"[8]": "FAILED", "[16]": "FINISHED"}
    assert parent.info.status == "FINISHED" and parent.data.tags["best.model.units"] == "[16]"


def test_a_search_cut_off_while_logging_its_results_logs_them_all_when_rerun(
    store, search_job, monkeypatch, capsys
):
    """The rerun has no trial left to run, yet must not take half-logged results for done."""
    path = str(search_job(max_trials=1, epochs=1))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr("tfdl.tracking.records.log_keras_model", interrupted)  # as it logs the model
        assert main(["tune", path]) == 130
    client = MlflowClient()
    (parent,), _ = search_runs(client, store / "mlflow.db")
    assert parent.info.status == "KILLED"
    assert main(["tune", path]) == 0
    (parent,), children = search_runs(client, store / "mlflow.db")
    assert parent.info.status == "FINISHED" and len(children) == 1
    assert "best_val_accuracy" in parent.data.metrics
    model = mlflow.tensorflow.load_model(f"runs:/{parent.info.run_id}/best_model")
    assert model.output_shape == (None, 10)


# ------------------------------------------------------------------------------ the guard


def test_a_signal_while_a_run_opens_lands_once_the_run_is_guarded(store):
    exp_id = tracking.experiment_id("test")
    client = MlflowClient()
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # as the CLI sets it

    def open_run():
        run_id = client.create_run(exp_id).info.run_id
        os.kill(os.getpid(), signal.SIGTERM)  # before the run is guarded
        client.set_tag(run_id, "opened", "whole")
        return run_id

    try:
        lifecycle = tracking.run_lifecycle(open_run, kind="training", interrupted="interrupted")
        with pytest.raises(KeyboardInterrupt), lifecycle:
            pytest.fail("the signal must stop the work before it starts")
    finally:
        signal.signal(signal.SIGTERM, previous)
    (run,) = all_runs(client)
    assert run.info.status == "KILLED" and run.data.tags["opened"] == "whole"


def test_the_guard_leaves_an_ignored_signal_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
        held = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert held == signal.SIG_IGN  # and nothing was raised


# A command whose work is given as Python source, exiting as the tfdl command does, run
# with `python -m` as the tests run tfdl.
INTERRUPTED_COMMAND = """
import sys, weakref
from tfdl import cli

def work():
{}
cli.main = lambda: cli.guarded("evaluate", work)
sys.exit(cli.run())
"""


def run_module(tmp_path, body: str) -> subprocess.CompletedProcess:
    (tmp_path / "probe_command.py").write_text(INTERRUPTED_COMMAND.format(body))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(PROJECT)])}
    return subprocess.run(
        [sys.executable, "-m", "probe_command"], env=env, capture_output=True, text=True
    )


def test_an_interrupt_inside_a_string_exec_still_exits_130(tmp_path):
    """Dataclasses and namedtuples build methods with a string exec while modules import:
    a Ctrl-C landing there, caught by the command, must not end the process by SIGINT."""
    out = run_module(tmp_path, '    exec("raise KeyboardInterrupt", {})')
    assert out.returncode == 130, out.stderr
    assert out.stderr.strip() == "interrupted before a run started: nothing was recorded"


@pytest.mark.parametrize("rest_s", [2.0, 0.0], ids=["stops-the-work", "work-ends-first"])
def test_an_interrupt_lost_in_a_weakref_callback_still_stops_the_command(tmp_path, rest_s):
    """Python cannot raise from a weakref callback (importlib's module locks): it prints
    "Exception ignored" and goes on. The command stops instead, as for any Ctrl-C; work
    that ends first still answers as interrupted."""
    body = f"""    import time
    class Lock: pass
    lock = Lock()
    def released(_):
        raise KeyboardInterrupt
    ref = weakref.ref(lock, released)
    del lock
    start = time.monotonic()
    while time.monotonic() - start < {rest_s}:
        time.sleep(0.01)
    print("the work ran on")
    return 0"""
    out = run_module(tmp_path, body)
    assert out.returncode == 130, out.stderr
    assert out.stderr.strip() == "interrupted before a run started: nothing was recorded"
    assert ("ran on" in out.stdout) == (rest_s == 0.0)


# ------------------------------------------------------------------- commands without runs


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "signum"),
    [("evaluate", signal.SIGINT), ("predict", signal.SIGTERM)],
    ids=["evaluate-SIGINT", "predict-SIGTERM"],
)
def test_evaluate_and_predict_interrupted_answer_in_one_line_and_change_nothing(
    store, tmp_path, command, signum
):
    import numpy as np

    from tfdl import train
    from tfdl.config import validate

    run = train(validate(TINY))
    np.save(tmp_path / "rows.npy", np.zeros((3, 64)))
    extra = ["--input", tmp_path / "rows.npy", "--output", tmp_path / "out.csv"]
    args = [command, "--run-id", run.run_id, *(extra if command == "predict" else [])]
    uri = os.environ["MLFLOW_TRACKING_URI"]
    client = MlflowClient(uri)
    before = [(r.info.run_id, r.info.status) for r in all_runs(client)]
    proc = start_tfdl(*args, uri=uri)
    time.sleep(2.5)  # loading TensorFlow or the model: well before the answer
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    (line,) = err.strip().splitlines()
    assert line.startswith("interrupted") and "nothing was recorded" in line, line
    assert [(r.info.run_id, r.info.status) for r in all_runs(client)] == before
    assert not (tmp_path / "out.csv").exists()
