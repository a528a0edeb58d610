"""A real `mlflow server` on 127.0.0.1 for the end-to-end tests, and REST calls to it."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .conftest import free_port

MLFLOW = Path(sys.executable).with_name("mlflow")  # the venv's executable, not one on PATH
HOST = "127.0.0.1"
START_TIMEOUT = 180  # MLflow 3's server takes ~20-30 s to start on 2 busy cores


def get(url: str, timeout: float = 10):
    """GET `url` and decode its JSON (or text) body."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body = response.read().decode()
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        return body


def post(url: str, payload: dict, timeout: float = 10):
    request = urllib.request.Request(
        url, json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read().decode())


class Server:
    """A running server: its base `url` and its REST API (2.0) read through urllib;
    `stop()` and `start()` take it down and bring it back on the same port and store."""

    def __init__(self, url: str, log: Path, command=None, folder: Path | None = None):
        self.url = url
        self.log = log
        self.command, self.folder, self.proc = command, folder, None

    def start(self) -> None:
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                self.command,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                start_new_session=True,
            )
        _wait_until_up(self.proc, self.url, self.log)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None

    def api(self, endpoint: str, **query):
        return get(f"{self.url}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}")

    def search_runs(self, experiment_id: str) -> list[dict]:
        found = post(f"{self.url}/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment_id]})
        return found.get("runs", [])


def _wait_until_up(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if get(f"{url}/health", timeout=2) is not None:
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise RuntimeError(f"mlflow server did not answer within {START_TIMEOUT} s:\n{log.read_text()}")


@contextlib.contextmanager
def mlflow_server(folder: Path):
    """`mlflow server` over a sqlite store in `folder`, serving artifacts from `folder`.

    One worker: the machine has two cores and the tests are the only clients.
    """
    port = free_port()
    url = f"http://{HOST}:{port}"
    log = folder / "server.log"
    command = [
        str(MLFLOW),
        "server",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
        "--serve-artifacts",
        "--artifacts-destination",
        str(folder / "artifacts"),
    ]
    folder.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    server = Server(url, log, command, folder)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, to the server's own process group: `mlflow server` runs
    uvicorn as a child, which a signal to the parent alone would leave behind."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=15)
            return
        except subprocess.TimeoutExpired:
            continue
