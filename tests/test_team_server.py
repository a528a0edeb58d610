"""A team's tracking server on PostgreSQL (`make server`, tfdl/team_server.py): trainings
and a distributed search sent to it from many processes at once all land whole, and bad
input is one line before anything starts."""

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tfdl import team_server

from .conftest import PROJECT, TFDL, TINY, free_port
from .mlflow_server import get

TEAM_SERVER = [sys.executable, "-m", "tfdl.team_server"]
# Runs a module as `python -m` would, with the PostgreSQL drivers unimportable, as where
# they are not installed: importing one fails and importlib.util.find_spec finds nothing.
WITHOUT_DRIVER = """
import runpy, sys
sys.modules["psycopg"] = sys.modules["psycopg2"] = None
runpy.run_module(sys.argv.pop(1), run_name="__main__", alter_sys=True)
"""
NO_DRIVER = (
    "needs the database driver psycopg, not installed; "
    "allowed: pip install 'psycopg[binary]' (tfdl's server extra)"
)
PASSWORD = "hunter2"


def without_driver(module: str, *args) -> list[str]:
    return [sys.executable, "-c", WITHOUT_DRIVER, module, *map(str, args)]


def refused(command, tmp_path, env=None) -> str:
    """Run `command` (the module's settings pointed into `tmp_path`); it must end with
    exit 2 and one line, having written nothing. Returns the line."""
    folders = ["--cluster", tmp_path / "cluster", "--artifacts", tmp_path / "artifacts"]
    if "tfdl.team_server" in command:
        command = [*command, *folders]
    done = subprocess.run(
        list(map(str, command)),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert not (tmp_path / "cluster").exists() and not (tmp_path / "artifacts").exists()
    assert PASSWORD not in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "args, line",
    [
        (["--port", "abc"], "error: PORT: 'abc' is not a port; allowed: 1 to 65535"),
        (["--port", ""], "error: PORT: '' is not a port; allowed: 1 to 65535"),
        (["--port", "0"], "error: PORT: 0 is out of range; allowed: 1 to 65535"),
        (["--port", "65536"], "error: PORT: 65536 is out of range; allowed: 1 to 65535"),
        (["--pg-port", "5432x"], "error: PG_PORT: '5432x' is not a port; allowed: 1 to 65535"),
        (["--host", "192.0.2.1"], "error: LISTEN: '192.0.2.1' is no address of this machine"),
        (["--db", f"mysql://me:{PASSWORD}@db/mlflow"], "error: DB: mysql://me:***@db/mlflow is"),
        (["--db", "postgresql://db/mlflow", "--pg-port", "5433"], "error: PG_PORT: is for"),
    ],
)
def test_bad_settings_are_one_line_before_anything_starts(args, line, tmp_path):
    command = [*TEAM_SERVER, "--host", "127.0.0.1", "--port", str(free_port()), *args]
    assert refused(command, tmp_path).startswith(line)


def test_a_port_in_use_is_refused(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = refused([*TEAM_SERVER, "--host", "127.0.0.1", "--port", port], tmp_path)
    assert line == f"error: PORT: 127.0.0.1:{port} is in use; allowed: a free port"


def test_a_database_that_does_not_answer_is_refused_with_its_password_masked(tmp_path):
    uri = f"postgresql://mlflow:{PASSWORD}@127.0.0.1:{free_port()}/mlflow"
    command = [*TEAM_SERVER, "--host", "127.0.0.1", "--port", free_port()]
    line = refused(command, tmp_path, env={team_server.DB_ENV: uri})  # as make passes DB
    problem = "error: DB: no database answers at postgresql+psycopg://mlflow:***@127.0.0.1:"
    assert line.startswith(problem)
    assert line.endswith("allowed: a running PostgreSQL server at " + team_server.PG_URI)


@pytest.mark.parametrize("db", [None, f"postgresql://mlflow:{PASSWORD}@127.0.0.1:1/mlflow"])
def test_the_server_without_the_driver_is_one_line(db, tmp_path):
    args = ["--host", "127.0.0.1", "--port", free_port(), *(["--db", db] if db else [])]
    line = refused(without_driver("tfdl.team_server", *args), tmp_path)
    assert line == f"error: DB: postgresql+psycopg:// {NO_DRIVER}"


@pytest.mark.parametrize("command", [["train", "{pipeline}"], ["compare"]])
def test_a_postgresql_tracking_uri_without_the_driver_is_one_line(command, tmp_path):
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump(TINY))
    args = [str(pipeline) if a == "{pipeline}" else a for a in command]
    uri = f"postgresql://mlflow:{PASSWORD}@127.0.0.1:1/mlflow"
    line = refused(without_driver("tfdl.cli", *args), tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert line == f"error: MLFLOW_TRACKING_URI: postgresql:// {NO_DRIVER}, or a sqlite:/// store"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_server_passes_a_bad_port_on(tmp_path):
    bin_dir = Path(sys.executable).parent  # -o: the installed venv counts as up to date
    command = ["make", "-s", f"BIN={bin_dir}", "-o", f"{bin_dir}/tfdl", "server", "PORT=http"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=PROJECT)
    assert done.returncode != 0
    assert "error: PORT: 'http' is not a port; allowed: 1 to 65535" in done.stderr.splitlines()


# ---------------------------------------------------------------- the server under load

SPACE = {
    "model.units": {"type": "choice", "values": [[8], [16]]},
    "model.activation": {"type": "choice", "values": ["relu", "tanh"]},
}
TRAININGS = 8
EPOCHS = {"team": 2, "team-search": 1}  # epochs of the trainings, of the search's trials
WORKLOAD_TIMEOUT = 900


@dataclass
class Team:
    url: str
    proc: subprocess.Popen
    folder: Path
    log: Path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _postmaster(data: Path) -> int | None:
    """The pid of the cluster's running server, from its lock file."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        return pid if _alive(pid) else None
    return None


@pytest.fixture
def team(tmp_path):
    """`python -m tfdl.team_server` (what make server runs) on free loopback ports: the
    server, and a PostgreSQL cluster of its own. Stopped whatever the test does."""
    if team_server.postgres_bindir() is None:
        pytest.skip(
            "PostgreSQL is not installed (no pg_config --bindir, no /usr/lib/postgresql/*/bin):"
            " .ci/run installs Debian's postgresql"
        )
    # Not under pytest's tmp_path, which root keeps to itself: PostgreSQL, run as the
    # postgres user when the tests run as root, must be able to enter its cluster's folder.
    folder = Path(tempfile.mkdtemp(prefix="tfdl-team-"))
    folder.chmod(0o755)
    port, log = free_port(), tmp_path / "team_server.log"
    command = [*TEAM_SERVER, "--host", "127.0.0.1", "--port", port, "--pg-port", free_port()]
    command += ["--cluster", folder / "postgres", "--artifacts", folder / "artifacts"]
    command += ["--workers", "2"]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            list(map(str, command)),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=PROJECT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + team_server.SERVER_START_TIMEOUT + 60
        while "Ctrl-C stops it" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        yield Team(f"http://127.0.0.1:{port}", proc, folder, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # its children get their parent-death signal
                proc.wait()
        deadline = time.monotonic() + 30
        while _postmaster(folder / "postgres" / "data") and time.monotonic() < deadline:
            time.sleep(0.2)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def workload(tmp_path, write_pipeline):
    """Starts 8 trainings and a search (a chief and two workers, 4 trials) against `url`
    at once; returns (name of the search, {name: process}) once all have ended."""
    procs: dict[str, subprocess.Popen] = {}
    search = f"team-search-{secrets.token_hex(4)}"  # the tuner's folder is the project's

    def start(url: str):
        env = {**os.environ, "MLFLOW_TRACKING_URI": url}
        pipeline = write_pipeline({**TINY, "tracking": {"experiment": "team"}})
        searched = {**TINY, "tracking": {"experiment": "team-search"}}
        job = {
            "pipeline": str(write_pipeline(searched, name="searched.yaml")),
            "tuner": "grid",
            "max_trials": 4,
            "epochs": EPOCHS["team-search"],
            "space": SPACE,
            "objective": {"metric": "val_accuracy", "direction": "max"},
        }
        (tmp_path / f"{search}.yaml").write_text(yaml.safe_dump(job))
        oracle = str(free_port())
        commands = {f"train {i}": ["train", pipeline] for i in range(TRAININGS)}
        commands["chief"] = [
            "tune",
            tmp_path / f"{search}.yaml",
            "--chief",
            "--oracle-port",
            oracle,
        ]
        for i in range(2):
            commands[f"worker {i}"] = ["tune", tmp_path / f"{search}.yaml", "--worker", i]
            commands[f"worker {i}"] += ["--oracle-port", oracle]
        for name, args in commands.items():
            with open(tmp_path / f"{name}.out", "w") as out:
                procs[name] = subprocess.Popen(
                    [*TFDL, *map(str, args)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=PROJECT,
                    env=env,
                    start_new_session=True,  # a trial's child process goes with it
                )
        deadline = time.monotonic() + WORKLOAD_TIMEOUT
        for proc in procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(1, deadline - time.monotonic()))
        return search, {
            n: (p.returncode, (tmp_path / f"{n}.out").read_text()) for n, p in procs.items()
        }

    try:
        yield start
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(PROJECT / "mlruns" / "tuner" / search, ignore_errors=True)


def _download(url: str, run_id: str, path: str) -> Path:
    """A run's file, fetched through the server at `url` (no global tracking URI set)."""
    import mlflow

    return Path(
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, tracking_uri=url)
    )


def _epochs(client, run_id: str, key: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, key)]


def _check_run(client, url: str, run, epochs: int, artifacts: set[str]) -> None:
    """FINISHED, every epoch of every per-epoch metric once, its files listed through the
    server and its history downloaded through it."""

    run_id = run.info.run_id
    assert run.info.status == "FINISHED", run.data.tags.get("tfdl.error")
    for key in ("loss", "val_loss", "accuracy", "val_accuracy", "epoch_time_s"):
        assert _epochs(client, run_id, key) == list(range(1, epochs + 1)), key
    for key in run.data.metrics:  # nothing logged twice at a step
        steps = _epochs(client, run_id, key)
        assert len(steps) == len(set(steps)), (key, steps)
    listed = {a.path for a in client.list_artifacts(run_id)}
    assert artifacts <= listed, listed
    if "history.csv" in artifacts:
        history = _download(url, run_id, "history.csv").read_text()
        assert len(history.splitlines()) == 1 + epochs


@pytest.mark.slow
def test_trainings_and_a_distributed_search_at_once_land_whole(team, workload):
    import mlflow
    from mlflow.tracking import MlflowClient

    started = time.monotonic()
    search, ended = workload(team.url)
    took = time.monotonic() - started
    failed = {n: out[-3000:] for n, (code, out) in ended.items() if code != 0}
    assert not failed, (failed, team.log.read_text()[-3000:])
    print(f"{TRAININGS} trainings and a search of 4 trials against the team server: {took:.0f} s")

    log = team.log.read_text()
    password = (team.folder / "postgres" / "password").read_text().strip()
    assert password not in log
    assert "backend store: postgresql+psycopg://mlflow:***@127.0.0.1:" in log
    assert f"MLflow tracking server on {team.url}" in log

    client = MlflowClient(team.url)
    experiments = {name: client.get_experiment_by_name(name) for name in EPOCHS}
    for experiment in experiments.values():  # proxied: the files go through the server
        assert experiment.artifact_location.startswith("mlflow-artifacts:")
    trainings = client.search_runs([experiments["team"].experiment_id])
    assert len(trainings) == TRAININGS
    assert len({r.info.run_name for r in trainings}) == TRAININGS
    files = {"config.yaml", "history.csv", "model_summary.txt", "data_spec.json"}
    for run in trainings:
        _check_run(client, team.url, run, EPOCHS["team"], files)

    found = client.search_runs([experiments["team-search"].experiment_id])
    (parent,) = [r for r in found if r.data.tags.get("tfdl.kind") == "search"]
    trials = [r for r in found if r.data.tags.get("tfdl.kind") == "trial"]
    assert parent.info.status == "FINISHED" and len(found) == 1 + 4
    assert len({r.data.tags["tfdl.trial_id"] for r in trials}) == 4
    combos = {(r.data.params["model.units"], r.data.params["model.activation"]) for r in trials}
    assert len(combos) == 4
    for run in trials:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        _check_run(client, team.url, run, EPOCHS["team-search"], set())
    table = _download(team.url, parent.info.run_id, "trials.csv").read_text()
    assert len(table.splitlines()) == 1 + 4

    # A model for each training and the search's best, once each, whole through the server.
    ids = [e.experiment_id for e in experiments.values()]
    models = client.search_logged_models(ids)
    sources = sorted(m.source_run_id for m in models)
    assert sources == sorted([*(r.info.run_id for r in trainings), parent.info.run_id])
    for model in models:
        local = mlflow.artifacts.download_artifacts(model.artifact_location, tracking_uri=team.url)
        assert (Path(local) / "MLmodel").is_file()
    stored = {p.name for p in (team.folder / "artifacts").rglob("*")}
    assert {r.info.run_id for r in trainings} <= stored  # on the server's disk

    # Ctrl-C stops the server and the cluster it started.
    data = team.folder / "postgres" / "data"
    postmaster = _postmaster(data)
    assert postmaster is not None
    team.proc.send_signal(signal.SIGINT)
    assert team.proc.wait(timeout=90) == 130
    assert "tracking server stopped" in team.log.read_text()
    assert not _alive(postmaster) and not (data / "postmaster.pid").exists()
    with pytest.raises((urllib.error.URLError, OSError)):
        get(f"{team.url}/health", timeout=2)
