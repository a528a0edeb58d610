"""Runs left RUNNING by a process that died: told apart from live ones (the run's lock on
this machine, the heartbeat from elsewhere), listed by `tfdl runs`, ended by
`--mark-stale`, and never taken over while they live."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from mlflow.tracking import MlflowClient

from tfdl.compare import compare
from tfdl.store import open_sqlite
from tfdl.tracking import liveness

from .conftest import PROJECT, run_tfdl

# A process that opens a run as tfdl does, then waits (no TensorFlow: quick to start).
HOLDER = textwrap.dedent(
    """
    import signal, sys, time
    from tfdl.tracking import new_run, run_lifecycle
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # as the tfdl command does
    from tfdl.tracking.lifecycle import client
    with run_lifecycle(new_run("jobs", name=sys.argv[1]), kind="training", interrupted="x") as r:
        client().log_metric(r, "loss", 1.0, step=1)  # an epoch, as compare reads runs
        print(r, flush=True)
        time.sleep(600)
    """
)


def holder(uri):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, f"run-{time.time_ns()}"],
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
    )
    return proc, proc.stdout.readline().strip()


def test_runs_tells_a_live_run_from_one_a_kill_left_and_marks_only_that_one(store):
    uri = os.environ["MLFLOW_TRACKING_URI"]
    (alive, alive_id), (dead, dead_id) = holder(uri), holder(uri)
    try:
        dead.kill()  # SIGKILL: nothing ends its run
        dead.wait(timeout=30)
        client = MlflowClient(uri)
        assert client.get_run(dead_id).info.status == "RUNNING"
        tags = client.get_run(alive_id).data.tags
        assert tags[liveness.PID] == str(alive.pid) and float(tags[liveness.HEARTBEAT]) > 0

        out = run_tfdl("runs", "--status", "RUNNING", env={"MLFLOW_TRACKING_URI": uri})
        assert out.returncode == 0, out.stderr
        rows = {line.split()[0]: line for line in out.stdout.splitlines()[1:] if line.strip()}
        assert "stale" in rows[dead_id] and f"process {dead.pid}" in rows[dead_id]
        assert "live" in rows[alive_id] and "stale" not in rows[alive_id]
        live = run_tfdl("train", "--resume", alive_id, env={"MLFLOW_TRACKING_URI": uri})
        assert live.returncode == 2, live.stderr  # a live run is never taken over
        assert f"run {alive_id} is still running (process {alive.pid}" in live.stderr
        assert "--mark-stale" in out.stdout
        table, _ = compare(["jobs"])
        table = table.set_index("run_id")
        assert table.loc[dead_id, "status"] == "RUNNING (stale)"
        assert table.loc[alive_id, "status"] == "RUNNING"

        out = run_tfdl("runs", "--mark-stale", env={"MLFLOW_TRACKING_URI": uri})
        assert out.returncode == 0, out.stderr
        assert f"run {dead_id} marked KILLED" in out.stdout
        assert f"tfdl train --resume {dead_id}" in out.stdout
        assert "1 stale run marked KILLED" in out.stdout
        ended = client.get_run(dead_id)
        assert ended.info.status == "KILLED"
        assert f"process {dead.pid}" in ended.data.tags[liveness.STALE_REASON]
        assert client.get_run(alive_id).info.status == "RUNNING"  # untouched

        # compare says which RUNNING run will never end.
        assert liveness.state_of(client.get_run(alive_id))[0] == "live"
    finally:
        alive.send_signal(signal.SIGTERM)  # ends its run KILLED, as Ctrl-C would
        alive.wait(timeout=30)
    assert MlflowClient(uri).get_run(alive_id).info.status == "KILLED"


def test_a_run_from_another_machine_is_stale_once_its_heartbeat_is_old(monkeypatch):
    tags = {liveness.HOST: "elsewhere", liveness.PID: "1", liveness.HEARTBEAT: str(time.time())}
    assert liveness.liveness("r1", "RUNNING", tags, None)[0] == "live"
    old = {**tags, liveness.HEARTBEAT: str(time.time() - liveness.STALE_AFTER_S - 5)}
    state, why = liveness.liveness("r1", "RUNNING", old, None)
    assert state == "stale" and "no heartbeat from process 1 on elsewhere" in why
    assert liveness.liveness("r1", "FINISHED", old, None) == ("", "")


@pytest.mark.slow
@pytest.mark.parametrize("existing", [False, True], ids=["fresh-store", "existing-store"])
def test_two_searches_of_one_file_at_once_the_second_is_refused_naming_the_first(
    tmp_path, search_job, existing
):
    """The first runs its search; the second says which process has it."""
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    if existing:
        open_sqlite(uri)
    path = search_job(batch_size=8, epochs=30)  # long enough for both to meet
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    tfdl = [sys.executable, "-m", "tfdl.cli", "tune", str(path)]
    first = subprocess.Popen(tfdl, cwd=PROJECT, env=env, text=True, stderr=subprocess.PIPE)
    second = subprocess.Popen(tfdl, cwd=PROJECT, env=env, text=True, stderr=subprocess.PIPE)
    _, err2 = second.communicate(timeout=300)
    _, err1 = first.communicate(timeout=600)
    results = sorted([(first.returncode, err1), (second.returncode, err2)])
    (ok, _), (refused, line) = results
    assert ok == 0, results
    assert refused == 2 and len(line.strip().splitlines()) == 1, line
    assert "is running already (process " in line, line
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("search").experiment_id])
    assert {r.info.status for r in runs} == {"FINISHED"}
    parents = [r for r in runs if r.data.tags.get("tfdl.kind") == "search"]
    assert len(parents) == 1 and len(runs) == 3  # one search, its two trials
