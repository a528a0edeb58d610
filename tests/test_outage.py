"""A real `mlflow server` on loopback, stopped under a training run: the epochs wait and
nothing is lost when it comes back; a server away longer than the run's patience fails
the run in one line, with what it could not write kept for `tfdl runs --upload`."""

import os
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from tfdl.store import LOG_MAX_S

from .conftest import PROJECT, TINY
from .mlflow_server import mlflow_server

pytestmark = pytest.mark.slow

# The CLI with its local folder (backups, unsent writes) moved to a temporary one.
MOVED_STORE = (
    "import sys; from pathlib import Path; import tfdl.store; "
    "tfdl.store.STORE = Path(sys.argv[1]); from tfdl.cli import main; sys.exit(main(sys.argv[2:]))"
)


def tfdl(local, uri, *args, wait=True):
    command = [sys.executable, "-c", MOVED_STORE, str(local), *map(str, args)]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    proc = subprocess.Popen(
        command, cwd=PROJECT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    if wait:
        out, err = proc.communicate(timeout=600)
        return proc.returncode, out, err
    return proc


def epochs_logged(client, n, timeout=300):
    """The run once it has logged `n` epochs."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        exp = client.get_experiment_by_name("outage")
        runs = client.search_runs([exp.experiment_id]) if exp else []
        if runs and len(client.get_metric_history(runs[0].info.run_id, "loss")) >= n:
            return runs[0]
        time.sleep(0.5)
    raise AssertionError(f"the run never logged {n} epochs")


def pipeline(write_pipeline, epochs, **tracking):
    # batch 4, one step per call: about a second an epoch
    train = {**TINY["train"], "epochs": epochs, "batch_size": 4, "steps_per_execution": 1}
    return write_pipeline(
        {**TINY, "train": train, "tracking": {"experiment": "outage", **tracking}}
    )


def steps(client, run_id):
    return [m.step for m in client.get_metric_history(run_id, "loss")]


def test_a_server_that_goes_away_and_comes_back_loses_no_epoch(tmp_path, write_pipeline):
    with mlflow_server(tmp_path / "server") as server:
        client = MlflowClient(server.url)
        # The first epoch is written at once; the server stops then, with enough epochs to
        # go that training outlasts the outage whatever the machine's speed.
        proc = tfdl(
            tmp_path / "local", server.url, "train", pipeline(write_pipeline, 30), wait=False
        )
        run_id = epochs_logged(client, 1).info.run_id
        server.stop()
        time.sleep(LOG_MAX_S + 2)  # a write falls in it; training goes on, its epochs wait
        server.start()
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        warned = [line for line in err.splitlines() if "tracking server" in line]
        assert len(warned) == 2, err
        assert "does not answer" in warned[0] and "answers again" in warned[1]
        assert client.get_run(run_id).info.status == "FINISHED"
        assert steps(client, run_id) == list(range(1, 31))  # every epoch, once


def test_a_server_away_past_the_patience_fails_the_run_and_upload_sends_the_rest(
    tmp_path, write_pipeline
):
    local = tmp_path / "local"
    with mlflow_server(tmp_path / "server") as server:
        client = MlflowClient(server.url)
        path = pipeline(write_pipeline, 200, outage_wait_s=3)
        proc = tfdl(local, server.url, "train", path, wait=False)
        run_id = epochs_logged(client, 2).info.run_id
        logged = len(steps(client, run_id))
        server.stop()
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, err
        line = err.strip().splitlines()[-1]
        assert "did not answer for 3 s" in line and "tfdl runs --upload" in line, err
        unsent = local / "unsent" / f"{run_id}.jsonl"
        assert unsent.exists() and str(unsent) in line

        server.start()
        code, out, err = tfdl(local, server.url, "runs", "--upload")
        assert code == 0, err
        assert f"run {run_id}: sent" in out and "its end (FAILED)" in out
        assert not unsent.exists()
        run = client.get_run(run_id)
        assert run.info.status == "FAILED" and "did not answer" in run.data.tags["tfdl.error"]
        got = steps(client, run_id)
        assert got == list(range(1, len(got) + 1)) and len(got) > logged  # the kept epochs
