"""A long search runs its trials in child processes, each replaced after worker_trials:
one parent run throughout, every trial once, Ctrl-C and crashes ending it as before."""

import os
import signal
import time

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tfdl.cli import main
from tfdl.config import load_tuning
from tfdl.search_workers import in_processes
from tfdl.store import open_sqlite

from .conftest import free_port, start_tfdl

INTERRUPTED = (
    "interrupted: the search and its current trial are marked KILLED; "
    "run the same command again to finish the search"
)


def start(*args, uri):
    return start_tfdl(*args, uri=uri, session=True)


def runs(client):
    exp = client.get_experiment_by_name("search")
    found = client.search_runs([exp.experiment_id]) if exp else []
    parents = [r for r in found if r.data.tags.get("tfdl.kind") == "search"]
    trials = [r for r in found if r.data.tags.get("tfdl.kind") == "trial"]
    return parents, sorted(trials, key=lambda r: r.info.start_time)


def finished_lines(out: str) -> list[str]:
    return [line.split(":")[0] for line in out.splitlines() if line.startswith("trial ")]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def poll(ready, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = ready()
        if found:
            return found
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.5)
    raise AssertionError("timed out")


def second_trial_under_way(client):
    """When the second process runs its trial (the search's second), an epoch in."""

    def ready():
        _, trials = runs(client)
        if len(trials) < 2 or trials[0].info.status != "FINISHED":
            return None
        second = trials[1]
        running = second.info.status == "RUNNING"
        return running and client.get_metric_history(second.info.run_id, "loss") and second

    return ready


# A process a trial of about 10 s: long enough to be stopped in the middle of one.
ONE_PER_PROCESS = dict(batch_size=4, epochs=30, max_trials=3, worker_trials=1)


def test_which_searches_run_their_trials_in_processes(search_in_processes):
    def of(role="alone", **settings):
        return in_processes(load_tuning(search_in_processes(**settings))[0], role)

    assert of()  # 5 trials, 2 per process
    assert not of(worker_trials=5)  # all of them fit in one process: no child
    assert not of(worker_trials=None)  # every trial in the command's process
    assert not of(role="chief")  # a chief serves trials, runs none
    assert of(role="worker")  # a worker is replaced like a search alone
    assert of(tuner="hyperband", worker_trials=50)  # Hyperband's count is unknown


@pytest.mark.slow
def test_a_search_runs_in_successive_processes_as_one_run(tmp_path, search_in_processes):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = start("tune", search_in_processes(), uri=uri)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert finished_lines(out) == [f"trial {n} of 5" for n in range(1, 6)]  # once each
    assert "Reloading Tuner" not in out  # the hand-overs do not show
    assert "best values:" in out

    client = MlflowClient(uri)
    (parent,), trials = runs(client)
    assert parent.info.status == "FINISHED" and "tfdl.error" not in parent.data.tags
    assert "worker_trials" not in parent.data.params  # how trials spread is no search setting
    assert [t.info.status for t in trials] == ["FINISHED"] * 5
    assert sorted(t.data.tags["tfdl.trial_id"] for t in trials) == ["0", "1", "2", "3", "4"]
    assert all(t.data.tags["mlflow.parentRunId"] == parent.info.run_id for t in trials)
    pids = [t.data.tags["tfdl.pid"] for t in trials]  # each trial's owner, in order
    assert len(set(pids)) == 3 and pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    assert parent.data.tags["tfdl.pid"] not in pids  # the parent runs none of them
    models = client.search_logged_models([parent.info.experiment_id])
    assert [m.source_run_id for m in models] == [parent.info.run_id]  # the best model, once
    assert "best_val_accuracy" in parent.data.metrics


@pytest.mark.slow
@pytest.mark.parametrize(
    "stop",
    [
        lambda proc: os.killpg(proc.pid, signal.SIGINT),  # Ctrl-C at the terminal
        lambda proc: proc.send_signal(signal.SIGTERM),  # kill PID
    ],
    ids=["ctrl-c", "sigterm"],
)
def test_a_search_stopped_in_its_second_process_is_killed_and_finished_by_the_same_command(
    stop, tmp_path, search_in_processes
):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    open_sqlite(uri)  # polling it must not race the command to create it
    client = MlflowClient(uri)
    path = search_in_processes(**ONE_PER_PROCESS)
    proc = start("tune", path, uri=uri)
    second = poll(second_trial_under_way(client), proc)
    stop(proc)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.strip().splitlines() == [INTERRUPTED]
    assert finished_lines(out) == ["trial 1 of 3"]
    assert not alive(int(second.data.tags["tfdl.pid"]))  # the child stopped with its parent
    (parent,), trials = runs(client)
    assert parent.info.status == "KILLED" and "interrupted" in parent.data.tags["tfdl.error"]
    assert [t.info.status for t in trials] == ["FINISHED", "KILLED"]
    assert trials[0].data.tags["tfdl.pid"] != trials[1].data.tags["tfdl.pid"]

    again = start("tune", path, uri=uri)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert finished_lines(out) == ["trial 2 of 3", "trial 3 of 3"]  # the rest, once
    (reopened,), trials = runs(client)
    assert reopened.info.run_id == parent.info.run_id and reopened.info.status == "FINISHED"
    assert [t.info.status for t in trials] == ["FINISHED"] * 3
    assert sorted(t.data.tags["tfdl.trial_id"] for t in trials) == ["0", "1", "2"]
    assert client.get_run(second.info.run_id).info.lifecycle_stage == "deleted"


@pytest.mark.slow
def test_a_child_that_dies_fails_the_search_in_one_line(tmp_path, search_in_processes):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    open_sqlite(uri)
    client = MlflowClient(uri)
    proc = start("tune", search_in_processes(**ONE_PER_PROCESS), uri=uri)
    second = poll(second_trial_under_way(client), proc)
    child = int(second.data.tags["tfdl.pid"])
    os.kill(child, signal.SIGKILL)  # as the kernel's out-of-memory killer would
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    (parent,), _ = runs(client)
    assert err.strip().splitlines() == [
        f"error: the search failed: TrialsProcessError: its trials process {child} was killed "
        f"by SIGKILL; run {parent.info.run_id} is marked FAILED, its error.txt has the traceback"
    ]
    assert parent.info.status == "FAILED"


@pytest.mark.slow
def test_a_worker_is_replaced_like_a_search_alone(tmp_path, search_in_processes):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path, port = search_in_processes(tuner="grid", max_trials=4), str(free_port())
    chief = start_tfdl("tune", path, "--chief", "--oracle-port", port, uri=uri)
    time.sleep(2)
    worker = start_tfdl("tune", path, "--worker", 0, "--oracle-port", port, uri=uri)
    try:
        out, err = worker.communicate(timeout=600)
        _, chief_err = chief.communicate(timeout=120)
    finally:
        for p in (chief, worker):
            if p.poll() is None:
                p.kill()
    assert worker.returncode == 0, err
    assert chief.returncode == 0, chief_err
    assert len(finished_lines(out)) == 4
    (parent,), trials = runs(MlflowClient(uri))
    assert parent.info.status == "FINISHED"
    assert [t.info.status for t in trials] == ["FINISHED"] * 4
    combos = {(t.data.params["model.units"], t.data.params["model.activation"]) for t in trials}
    assert len(combos) == 4
    pids = [t.data.tags["tfdl.pid"] for t in trials]
    assert len(set(pids)) == 2 and pids[0] == pids[1] != pids[2] == pids[3]


def test_changing_worker_trials_resumes_the_search(store, search_in_processes):
    path = search_in_processes(max_trials=1, worker_trials=None)
    assert main(["tune", str(path)]) == 0
    assert main(["tune", str(path), "worker_trials=3"]) == 0  # not "the search changed"
    (parent,), trials = runs(MlflowClient())
    assert parent.info.status == "FINISHED" and len(trials) == 1


@pytest.mark.parametrize("value", ["0", "-2", "2.5", "true", "many", "[2]"])
def test_worker_trials_not_a_positive_integer_is_one_line(
    value, search_in_processes, tmp_path, monkeypatch, capsys
):
    folder = tmp_path / "store"
    folder.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
    for settings, args in [  # in the file, and on the command line
        ({"worker_trials": yaml.safe_load(value)}, []),
        ({}, [f"worker_trials={value}"]),
    ]:
        assert main(["tune", str(search_in_processes(**settings)), *args]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("error: worker_trials: "), line
        assert list(folder.iterdir()) == []  # no store, no run


def test_a_search_in_processes_checks_its_input_before_anything_is_written(
    search_in_processes, tmp_path, monkeypatch, capsys
):
    folder = tmp_path / "store"
    folder.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
    path = search_in_processes(
        objective={"metric": "val_f1", "direction": "max"}
    )  # 5 trials, 2 per process
    assert main(["tune", str(path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: objective.metric: 'val_f1' is not logged; allowed: "), line
    assert list(folder.iterdir()) == []
