import functools
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tfdl.data.spec import DataSpec

PROJECT = Path(__file__).resolve().parent.parent
TFDL = [sys.executable, "-m", "tfdl.cli"]  # the console script, run by this interpreter
# Test processes (and the commands they start) share a GPU: each takes memory as it needs
# it rather than all of it. Read by TensorFlow when it sets up a GPU; no effect without one.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")


@functools.cache
def has_gpu() -> bool:
    """Whether TensorFlow sees a GPU here; without an NVIDIA driver, known before it loads."""
    from tfdl.search_workers import visible_gpus

    if not visible_gpus():
        return False
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def pytest_collection_modifyitems(config, items):
    """Slow tests first, each module's in its own order: the test processes steal queued
    tests from each other (make test: --dist worksteal), so the long end-to-end tests
    overlap the many short ones instead of trailing them. Tests marked gpu are skipped,
    with the reason, where there is no GPU."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable
    marked = [item for item in items if item.get_closest_marker("gpu")]
    if marked and not has_gpu():
        skip = pytest.mark.skip(reason="no GPU: TensorFlow sees none here (make test-gpu on one)")
        for item in marked:
            item.add_marker(skip)


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh MLflow sqlite store for one test; returns its folder."""
    folder = tmp_path / "store"
    folder.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
    return folder


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """Keras's home is an empty folder, and the origin cannot be reached: the Keras data
    sets are neither cached nor downloadable. Returns where Keras would cache them."""
    from tfdl.data import keras_sets

    home = tmp_path / "keras-home"
    home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(home))
    config = sys.modules.get("keras.src.backend.config")
    if config is not None:  # Keras already read its home
        monkeypatch.setattr(config, "_KERAS_DIR", str(home))
    monkeypatch.setattr(keras_sets, "reachable", lambda host: False)
    return home / "datasets"


@pytest.fixture
def write_pipeline(tmp_path):
    """Write a pipeline mapping (or raw text) to a YAML file and return its path."""

    def write(content, name="pipeline.yaml"):
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
        return path

    return write


@pytest.fixture
def search_job(tmp_path, write_pipeline):
    """Write a grid search over two widths of the tiny pipeline; returns its path."""

    def write(batch_size=64, epochs=2, steps_per_execution="auto", **settings):
        train = {**TINY["train"], "batch_size": batch_size}
        train["steps_per_execution"] = steps_per_execution
        pipeline = write_pipeline({**TINY, "train": train, "tracking": {"experiment": "search"}})
        path = tmp_path / "search.yaml"
        content = {
            "pipeline": str(pipeline),
            "tuner": "grid",
            "max_trials": 2,
            "epochs": epochs,
            "space": {"model.units": {"type": "choice", "values": [[8], [16]]}},
            "objective": {"metric": "val_accuracy", "direction": "max"},
            **settings,
        }
        path.write_text(yaml.safe_dump(content))
        return path

    return write


# Two widths and two activations: six trials to draw from.
SEARCH_SPACE = {
    "model.units": {"type": "choice", "values": [[8], [16], [32]]},
    "model.activation": {"type": "choice", "values": ["relu", "tanh"]},
}


@pytest.fixture
def search_in_processes(tmp_path, write_pipeline):
    """Write a random search of 5 trials of 1 epoch, 2 trials per process; returns its path."""

    def write(batch_size=64, **settings):
        train = {**TINY["train"], "batch_size": batch_size}
        pipeline = write_pipeline({**TINY, "train": train, "tracking": {"experiment": "search"}})
        content = {
            "pipeline": str(pipeline),
            "epochs": 1,
            "max_trials": 5,
            "worker_trials": 2,
            "space": SEARCH_SPACE,
            "objective": {"metric": "val_accuracy", "direction": "max"},
            **settings,
        }
        path = tmp_path / "search.yaml"
        path.write_text(yaml.safe_dump(content))
        return path

    return write


def sigint_as_python_default():
    # A process started in the background inherits SIGINT ignored, and Python keeps it so.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_tfdl(*args, uri: str, session: bool = False):
    """The real `tfdl` command as a background process against the store `uri`, taking
    Ctrl-C (SIGINT) as a user's terminal would deliver it. `session`: in a session of its
    own, as a terminal's foreground job: a signal to its process group reaches it (and
    whatever it started there), not the tests."""
    return subprocess.Popen(
        [*TFDL, *map(str, args)],
        cwd=PROJECT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
        start_new_session=session,
        preexec_fn=sigint_as_python_default,
    )


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_tfdl(*args, env=None, timeout=300):
    """The real `tfdl` command in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*TFDL, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=PROJECT,
    )


TINY = {
    "data": {"source": "digits"},
    "model": {"arch": "deep_mlp", "units": [16]},
    "train": {"epochs": 2, "batch_size": 64, "verbose": 0, "optimizer": {"learning_rate": 0.01}},
    "tracking": {"experiment": "test"},
}

# Raw targets in the hundreds and a huge step: the loss overflows within the first epoch.
DIVERGING = {
    "data": {"source": "diabetes", "normalize": "none"},
    "model": {"arch": "deep_mlp", "units": [8]},
    "train": {"epochs": 3, "verbose": 0, "optimizer": {"name": "sgd", "learning_rate": 1e6}},
    "tracking": {"experiment": "test"},
}


# ------------------------------------------------------------------- data for model builders

# A character language model's data: ids over 7 characters, windows of 12.
LM_SPEC = DataSpec(
    input_shape=(12,), task="language_model", num_classes=7, vocabulary=tuple("abcdefg")
)


def data_spec(shape, task="multiclass"):
    """The DataSpec of a supervised task on inputs of `shape`: 2 classes when binary, else 10."""
    return DataSpec(input_shape=shape, task=task, num_classes=2 if task == "binary" else 10)


def random_inputs(shape, n=4, seed=0):
    """`n` float32 samples of `shape` drawn from N(0, 1)."""
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype("float32")


@pytest.fixture(scope="module")
def date_data():
    """64 dates in assorted written formats paired with their ISO form: seq2seq data."""
    from tfdl.data import dates
    from tfdl.data.schema import Dates

    return dates.load_dates(Dates(source="dates", n_samples=64), seed=3)
