"""tfdl serve: MLflow's scoring server over a run's model (or a registered version) answers
raw inputs as tfdl predict does, and Ctrl-C or SIGTERM stop all of it without a traceback."""

import contextlib
import json
import os
import shlex
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import tfdl
from tfdl.cli import main
from tfdl.data.split import load_splits

from .conftest import PROJECT, TFDL, free_port, sigint_as_python_default

pytestmark = pytest.mark.slow

START_TIMEOUT = 180  # the server imports TensorFlow and loads the model: ~20 s on 2 cores

# A tabular model with named features and an image model, both on the default scaling
# (standard, fitted on the training split), which the model applies to raw inputs itself.
TABULAR = {
    "data": {"source": "iris"},
    "model": {"arch": "deep_mlp", "units": [8]},
    "train": {"epochs": 20, "batch_size": 16, "verbose": 0, "optimizer": {"learning_rate": 0.01}},
    "tracking": {"experiment": "served"},
}
IMAGE = {
    "model.filters": [8, 16],
    "model.dense_units": [16],
    "train.epochs": 4,
    "train.verbose": 0,
    "tracking.experiment": "served",
}


def trained(kind: str):
    cfg = tfdl.load_pipeline(
        PROJECT / "pipelines" / "cnn2d.yaml" if kind == "image" else TABULAR,
        IMAGE if kind == "image" else {},
    )
    return cfg, tfdl.train(cfg)


def raw_rows(cfg, n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Test rows as a user has them (pixel values 0-16, centimetres) and their labels."""
    splits = load_splits(cfg.data, cfg.train.seed)
    assert splits.x_test.max() > 2  # unscaled
    return splits.x_test[:n], splits.y_test[:n]


def predicted(args, rows: np.ndarray, tmp_path: Path) -> pd.DataFrame:
    """What `tfdl predict` writes for `rows`."""
    np.save(tmp_path / "rows.npy", rows)
    out = tmp_path / "predictions.csv"
    assert (
        main(["predict", *args, "--input", str(tmp_path / "rows.npy"), "--output", str(out)]) == 0
    )
    return pd.read_csv(out)


def post(url: str, payload: dict) -> dict:
    request = urllib.request.Request(
        url, json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def server_processes(port: int) -> list[int]:
    """Processes whose command line names the port (MLflow's command, uvicorn)."""
    pids = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if proc.name.isdigit() and b"--port" in argv and str(port).encode() in argv:
                pids.append(int(proc.name))
    return pids


@contextlib.contextmanager
def serving(*args, tmp_path: Path):
    """`tfdl serve ARGS` as a user's terminal would run it, until /ping answers."""
    port = free_port()
    out, err = tmp_path / f"serve-{port}.out", tmp_path / f"serve-{port}.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen(
            [*TFDL, "serve", *args, "--port", str(port)],
            cwd=PROJECT,
            stdout=stdout,
            stderr=stderr,
            preexec_fn=sigint_as_python_default,
            start_new_session=True,  # its own terminal: Ctrl-C goes to its process group
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not answers(url):
            assert proc.poll() is None, err.read_text()
            assert time.monotonic() < deadline, err.read_text()
            time.sleep(0.5)
        proc.url, proc.port, proc.out, proc.err = url, port, out, err
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def stop(server, sig) -> None:
    """Ctrl-C (SIGINT to the terminal's process group) or SIGTERM: the server is gone,
    with one line and no traceback."""
    os.killpg(server.pid, sig)
    assert server.wait(timeout=60) == 130
    err = server.err.read_text()
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == f"interrupted: the server on {server.url} is stopped"
    assert server_processes(server.port) == []
    assert not answers(server.url)


@pytest.mark.parametrize("kind", ["tabular", "image"])
def test_the_server_answers_raw_inputs_as_predict_does(kind, store, tmp_path):
    cfg, run = trained(kind)
    rows, labels = raw_rows(cfg)
    expected = predicted(["--run-id", run.run_id], rows, tmp_path)
    columns = [c for c in expected.columns if c.startswith("p_")]
    with serving("--run-id", run.run_id, tmp_path=tmp_path) as server:
        first, example = server.out.read_text().splitlines()[:2]
        uri = f"runs:/{run.run_id}/model"
        assert first == f"serving {uri} (run {run.run_id}) on {server.url}; Ctrl-C stops it"
        # The example request is one a user can paste: it gets one row of probabilities.
        command = shlex.split(example.removeprefix("try: "))
        assert command[:3] == ["curl", "-s", f"{server.url}/invocations"]
        (one,) = post(command[2], json.loads(command[-1]))["predictions"]
        assert len(one) == len(columns)

        got = np.asarray(
            post(f"{server.url}/invocations", {"inputs": rows.tolist()})["predictions"]
        )
        print(f"\n{kind}: labels {labels[:4].tolist()}, served {got[:4].round(4).tolist()}")
        print(f"{kind}: predict {expected.iloc[:4].round(4).to_dict('records')}")
        np.testing.assert_allclose(got, expected[columns].to_numpy(), atol=1e-5)
        names = [c.removeprefix("p_") for c in columns]
        assert [names[i] for i in got.argmax(axis=1)] == list(expected["prediction"].astype(str))
        stop(server, signal.SIGINT)


def test_a_search_s_champion_is_served_by_its_alias_and_sigterm_stops_it(
    store, tmp_path, write_pipeline
):
    pipeline = write_pipeline(TABULAR)
    job = tmp_path / "search.yaml"
    space = {"model.units": {"type": "choice", "values": [[8], [16]]}}
    settings = {"max_trials": 2, "epochs": 10, "space": space, "register_as": "iris"}
    job.write_text(yaml.safe_dump({"pipeline": str(pipeline), **settings}))
    search = tfdl.tune(job)
    rows, _ = raw_rows(tfdl.load_pipeline(TABULAR))
    expected = predicted(["--model", "iris@champion"], rows, tmp_path)
    assert expected.equals(predicted(["--run-id", search.parent_id], rows, tmp_path))
    with serving("--model", "iris@champion", tmp_path=tmp_path) as server:
        first = server.out.read_text().splitlines()[0]
        assert first.startswith(f"serving models:/iris/1 (run {search.parent_id}) on ")
        got = post(f"{server.url}/invocations", {"inputs": rows.tolist()})["predictions"]
        columns = [c for c in expected.columns if c.startswith("p_")]
        np.testing.assert_allclose(got, expected[columns].to_numpy(), atol=1e-5)
        stop(server, signal.SIGTERM)
