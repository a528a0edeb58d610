"""A logged model over HTTP: MLflow's scoring server on 127.0.0.1, and a request to paste.

The server is `mlflow models serve` in a process group of its own, so that Ctrl-C reaches
tfdl alone, which stops the whole group (MLflow's command and the uvicorn server it
starts) and reports one line instead of each process's traceback. On Linux the server
also ends with tfdl if tfdl is killed outright.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tfdl.errors import ConfigError

HOST = "127.0.0.1"
STOP_TIMEOUT = 20  # seconds uvicorn gets to finish its requests before SIGKILL
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36  # Linux prctl options


def _prctl(option: int, value: int) -> None:
    """Linux's prctl; elsewhere nothing."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(option, value)


def check_port(port: int) -> None:
    """Refuse a port the server could not listen on, before anything starts."""
    if not 0 < port < 65536:
        raise ConfigError("port", f"{port} is out of range", "1 to 65535")
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            raise ConfigError("port", f"{HOST}:{port} is in use", "a free port") from None


def example_payload(inputs: list[dict] | None, input_shape) -> dict:
    """A one-row request the served model takes, all zeros: `inputs` is the model's
    signature (MLflow's input specs as dicts); without one, a tensor of `input_shape`."""
    if not inputs:
        return {"inputs": np.zeros((1, *input_shape), dtype="float32").tolist()}
    if all(i.get("type") != "tensor" for i in inputs):  # named columns: a table
        columns = [i["name"] for i in inputs]
        return {"dataframe_split": {"columns": columns, "data": [[0.0] * len(columns)]}}

    def zeros(spec):
        shape = [1 if n == -1 else n for n in spec["tensor-spec"]["shape"]]
        dtype = spec["tensor-spec"]["dtype"]
        if dtype in ("object", "str"):  # a text: an example sentence rather than zeros
            return np.full(shape, "an example text", dtype=object).tolist()
        return np.zeros(shape, dtype=dtype).tolist()

    if len(inputs) == 1 and not inputs[0].get("name"):
        return {"inputs": zeros(inputs[0])}
    return {"inputs": {i["name"]: zeros(i) for i in inputs}}


def example_request(port: int, payload: dict) -> str:
    """A curl command line asking the server at `port` for `payload`'s predictions."""
    url = f"http://{HOST}:{port}/invocations"
    body = shlex.quote(json.dumps(payload))
    return f"curl -s {url} -H 'Content-Type: application/json' -d {body}"


def serve(model_uri: str, port: int, tracking_uri: str) -> int:
    """Run MLflow's scoring server for `model_uri` until it stops, Ctrl-C or SIGTERM
    (KeyboardInterrupt, as the CLI's guard turns SIGTERM into), which stop its whole
    process group; returns the server's exit code."""
    bin_dir = Path(sys.executable).parent  # the venv's mlflow, and uvicorn, which it runs
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,  # where `runs:/` and `models:/` resolve
        "PATH": os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")]),
    }
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    command = [str(bin_dir / "mlflow"), "models", "serve", "-m", model_uri]
    command += ["--env-manager", "local", "--host", HOST, "--port", str(port)]
    # uvicorn outlives MLflow's command on SIGTERM: as its subreaper, tfdl sees it exit.
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    server = subprocess.Popen(
        command,
        env=env,
        start_new_session=True,
        preexec_fn=lambda: _prctl(PR_SET_PDEATHSIG, signal.SIGTERM),
    )
    try:
        return server.wait()
    except KeyboardInterrupt:
        _stop(server)
        raise


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, SIGKILL to what is left after STOP_TIMEOUT;
    returns once no process of the group is left. A second Ctrl-C waits its turn."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            deadline = time.monotonic() + STOP_TIMEOUT
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, sig)
            while time.monotonic() < deadline:
                _reap()
                try:
                    os.killpg(server.pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.1)
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


def _reap() -> None:
    """Collect the exit of every child that has ended, so none lingers as a zombie."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
