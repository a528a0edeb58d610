"""`tfdl tune FILE --workers N`: the command starts Keras Tuner's chief and N workers on
127.0.0.1, each worker replaced after worker_trials trials, and holds the search's run:
one run FINISHED, every trial once, one line per finished trial; Ctrl-C stops them all
and leaves nothing RUNNING; bad input is one line and writes nothing."""

import collections
import os
import signal
import subprocess

import psutil
import pytest
from mlflow.tracking import MlflowClient

import tfdl
from tfdl.cli import _interrupted, main
from tfdl.errors import ConfigError
from tfdl.search_workers import cluster, visible_gpus
from tfdl.store import open_sqlite
from tfdl.tracking.lifecycle import Ending

from .conftest import PROJECT
from .test_search_workers import alive, poll, runs, start

INTERRUPTED = (
    "interrupted: the search and its 2 current trials are marked KILLED; "
    "run the same command again to finish the search"
)


@pytest.mark.slow
def test_two_workers_run_the_search_as_one_run_each_replaced_after_its_trials(
    tmp_path, search_in_processes
):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = start("tune", search_in_processes(), "--workers", 2, uri=uri)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert err == ""  # nothing from the processes but their finished trials' lines
    lines = out.splitlines()
    assert lines[0].startswith("search search: a chief and 2 workers on 127.0.0.1:"), out
    finished = [line for line in lines if line.startswith("trial ")]
    # One whole line per finished trial, each naming its worker; no epoch lines.
    assert sorted(line.split(":")[0] for line in finished) == [
        f"trial {n} of 5" for n in range(1, 6)
    ]
    assert {line.rsplit(" (", 1)[1] for line in finished} == {"worker 0)", "worker 1)"}
    assert not [line for line in lines if "epoch" in line]
    assert "best values:" in out

    client = MlflowClient(uri)
    (parent,), trials = runs(client)
    assert parent.info.status == "FINISHED" and "tfdl.error" not in parent.data.tags
    assert [t.info.status for t in trials] == ["FINISHED"] * 5
    assert sorted(t.data.tags["tfdl.trial_id"] for t in trials) == ["0", "1", "2", "3", "4"]
    assert all(t.data.tags["mlflow.parentRunId"] == parent.info.run_id for t in trials)
    # Both workers ran trials; each worker's process ran at most 2 before the next took over.
    tuners = collections.defaultdict(set)
    for t in trials:
        tuners[t.data.tags["tfdl.tuner_id"]].add(t.data.tags["tfdl.pid"])
    assert set(tuners) == {"tuner0", "tuner1"}
    per_process = collections.Counter(t.data.tags["tfdl.pid"] for t in trials)
    assert max(per_process.values()) <= 2 and len(per_process) >= 3  # 5 trials: replaced
    assert sum(len(pids) for pids in tuners.values()) == len(per_process)  # a pid, one worker
    assert parent.data.tags["tfdl.pid"] not in per_process  # the command runs no trial
    models = client.search_logged_models([parent.info.experiment_id])
    assert [m.source_run_id for m in models] == [parent.info.run_id]  # the best model, once
    assert "best_val_accuracy" in parent.data.metrics


@pytest.mark.slow
def test_ctrl_c_stops_the_chief_and_every_worker_and_leaves_nothing_running(
    tmp_path, search_in_processes
):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    open_sqlite(uri)  # polling it must not race the command to create it
    client = MlflowClient(uri)
    # Trials of about 10 s: both workers are in the middle of one when Ctrl-C comes.
    proc = start("tune", search_in_processes(batch_size=4, epochs=30), "--workers", 2, uri=uri)

    def both_training():
        running = [t for t in runs(client)[1] if t.info.status == "RUNNING"]
        with_epochs = [t for t in running if client.get_metric_history(t.info.run_id, "loss")]
        return len(with_epochs) == 2 and with_epochs

    training = poll(both_training, proc)
    children = psutil.Process(proc.pid).children(recursive=True)  # the chief, the workers
    assert len(children) == 3
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C at the terminal
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130
    assert err.strip().splitlines() == [INTERRUPTED]
    assert not [c for c in children if alive(c.pid)]
    assert not [t for t in training if alive(int(t.data.tags["tfdl.pid"]))]
    (parent,), trials = runs(client)
    assert parent.info.status == "KILLED" and "interrupted" in parent.data.tags["tfdl.error"]
    statuses = collections.Counter(t.info.status for t in trials)
    assert statuses["KILLED"] == 2 and set(statuses) <= {"KILLED", "FINISHED"}


@pytest.mark.parametrize(
    "args, problem",
    [
        (["--workers", "0"], "error: --workers: 0 is out of range; allowed: 1 to 256"),
        (["--workers", "-2"], "error: --workers: -2 is out of range; allowed: 1 to 256"),
        (["--workers", "257"], "error: --workers: 257 is out of range; allowed: 1 to 256"),
        (["--workers", "two"], "argument --workers: invalid int value: 'two'"),
        (["--workers", "2.5"], "argument --workers: invalid int value: '2.5'"),
        (["--workers", "2", "--chief"], "argument --chief: not allowed with argument --workers"),
        (["--worker", "0", "--workers", "2"], "argument --workers: not allowed with argument"),
    ],
    ids=["zero", "negative", "too-many", "word", "fraction", "with-chief", "with-worker"],
)
def test_bad_workers_is_one_line_and_writes_nothing(
    args, problem, search_in_processes, tmp_path, monkeypatch, capsys
):
    folder = tmp_path / "store"
    folder.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
    assert main(["tune", str(search_in_processes()), *args]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and problem in line, line
    assert list(folder.iterdir()) == []  # no store, no run


@pytest.mark.parametrize("workers", [0, -1, True, 2.0, "2"])
def test_workers_from_python_must_be_a_whole_number(workers, search_in_processes, store):
    with pytest.raises(ConfigError, match="workers: .* is not a number of workers"):
        tfdl.tune(search_in_processes(), workers=workers)
    assert list(store.iterdir()) == []


def test_each_worker_has_its_own_gpu_and_the_chief_none():
    chief, *workers = cluster(3, 4567, ["0", "1"])
    oracle = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": "4567"}
    assert chief.env == {**oracle, "KERASTUNER_TUNER_ID": "chief", "CUDA_VISIBLE_DEVICES": "-1"}
    assert [w.env["KERASTUNER_TUNER_ID"] for w in workers] == ["tuner0", "tuner1", "tuner2"]
    assert [w.env["CUDA_VISIBLE_DEVICES"] for w in workers] == ["0", "1", "0"]  # round the GPUs
    assert [w.name for w in workers] == ["worker 0", "worker 1", "worker 2"]
    # No GPU: the devices are left as they are.
    assert not [s for s in cluster(2, 4567, []) if "CUDA_VISIBLE_DEVICES" in s.env]


@pytest.mark.parametrize(
    "listed, gpus",
    [
        ("0,1", ["0", "1"]),
        ("2", ["2"]),
        ("", []),
        ("-1", []),
        ("1,-1,0", ["1"]),
        ("GPU-5e2a", ["GPU-5e2a"]),
    ],
)
def test_the_gpus_a_search_may_use_are_those_cuda_visible_devices_lists(listed, gpus, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", listed)
    assert visible_gpus() == gpus


def test_an_interrupted_search_with_two_workers_names_both_trials():
    ended = [Ending("a", "trial", "KILLED"), Ending("b", "trial", "FINISHED")]
    ended += [Ending("c", "trial", "KILLED"), Ending("p", "search", "KILLED")]
    assert _interrupted("tune", ended) == INTERRUPTED


def test_make_tune_distributed_runs_the_command_with_workers():
    dry = subprocess.run(
        ["make", "-s", "-n", "-o", ".venv/bin/tfdl", "tune-distributed", "WORKERS=3"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert dry.stdout.split() == [
        ".venv/bin/tfdl",
        "tune",
        "tuning/mlp_random.yaml",
        "--workers",
        "3",
    ]
