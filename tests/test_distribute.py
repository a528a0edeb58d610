"""tf.distribute training: train.distribution (mirrored, multi_worker) and
train.mixed_precision, for `tfdl train` and search trials alike."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from tfdl import distribute
from tfdl.config import load_tuning, validate
from tfdl.errors import ConfigError
from tfdl.prepared import prepare

from .conftest import PROJECT, TFDL, TINY, free_port, run_tfdl

# ------------------------------------------------------------------ the cluster's settings


@pytest.mark.parametrize(
    "workers, index, field, allowed",
    [
        ("127.0.0.1", 0, "workers", "host:port"),
        ("127.0.0.1:80,127.0.0.1:", 0, "workers", "host:port"),
        ("127.0.0.1:80,:81", 0, "workers", "host:port"),
        ("127.0.0.1:80,127.0.0.1:99999", 0, "workers", "1 to 65535"),
        ("127.0.0.1:80,127.0.0.1:80", 1, "workers", "one host:port per worker"),
        ("", 0, "workers", "host:port"),
        ("127.0.0.1:80,127.0.0.1:81", 2, "worker_index", "0 to 1"),
        ("127.0.0.1:80,127.0.0.1:81", -1, "worker_index", "0 to 1"),
        ("127.0.0.1:80,127.0.0.1:81", None, "worker_index", "0 to 1"),
        (None, 1, "workers", "workers host:port"),
    ],
)
def test_a_cluster_that_cannot_work_is_one_error_naming_the_setting(workers, index, field, allowed):
    with pytest.raises(ConfigError) as err:
        distribute.cluster("multi_worker", workers, index)
    assert err.value.field == field and allowed in err.value.allowed


def test_the_cluster_becomes_tf_config_and_worker_0_is_the_chief():
    c = distribute.cluster("multi_worker", "127.0.0.1:2001, [::1]:2002,node-b:2003", 1)
    assert c.workers == ("127.0.0.1:2001", "[::1]:2002", "node-b:2003") and not c.is_chief
    assert json.loads(c.tf_config()) == {
        "cluster": {"worker": ["127.0.0.1:2001", "[::1]:2002", "node-b:2003"]},
        "task": {"type": "worker", "index": 1},
    }
    assert distribute.cluster("multi_worker", ["a:1", "b:2"], 0).is_chief
    assert distribute.cluster("mirrored") is None and distribute.cluster("none") is None


@pytest.mark.parametrize("distribution", ["none", "mirrored"])
def test_a_cluster_is_only_for_multi_worker_and_multi_worker_needs_one(distribution):
    with pytest.raises(ConfigError) as err:
        distribute.cluster(distribution, "a:1,b:2", 0)
    assert err.value.field == "workers" and "multi_worker" in err.value.allowed
    with pytest.raises(ConfigError) as err:
        distribute.cluster("multi_worker")
    assert err.value.field == "workers"


def test_a_port_in_use_is_refused_before_tensorflow_starts():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        c = distribute.cluster("multi_worker", f"127.0.0.1:{port},127.0.0.1:{free_port()}", 0)
        with pytest.raises(ConfigError, match="in use"):
            distribute.check_port(c)
    distribute.check_port(c)  # free again


def test_the_lecture_loop_is_refused_with_a_distribution():
    cfg = validate({**TINY, "train": {**TINY["train"], "loop": "custom"}})
    prepare(cfg)  # on one device: fine
    cfg.train.distribution = "mirrored"
    with pytest.raises(ConfigError) as err:
        prepare(cfg)
    assert err.value.field == "train.loop" and "fit" in err.value.allowed


def test_every_worker_of_a_cluster_backs_up_at_the_same_epochs(monkeypatch):
    # A clock would decide differently on each worker; saving reads variables in step.
    from tfdl import training

    seen = []

    class Stop(Exception):
        pass

    def capture(cfg, **kwargs):
        seen.append(kwargs)
        raise Stop

    monkeypatch.setattr(training, "build_callbacks", capture)
    for distribution in ("none", "multi_worker"):
        cfg = validate({**TINY, "train": {**TINY["train"], "distribution": distribution}})
        with pytest.raises(Stop):
            training.fit(None, prepare(cfg), run_dir=Path("unused"))
    assert "backup_every_s" not in seen[0] and seen[1]["backup_every_s"] == 0.0


# -------------------------------------------------------------------------- search trials


def test_a_search_files_distribution_and_precision_set_its_trials_train_section(
    tmp_path, write_pipeline
):
    pipeline = write_pipeline(TINY)
    space = {"model.units": {"type": "choice", "values": [[8], [16]]}}

    def load(**job):
        path = tmp_path / "job.yaml"
        path.write_text(yaml.safe_dump({"pipeline": str(pipeline), "space": space, **job}))
        return validate(load_tuning(path)[1]).train

    assert (load().distribution, load().mixed_precision) == ("none", False)
    t = load(distribution="mirrored", mixed_precision=True)
    assert (t.distribution, t.mixed_precision) == ("mirrored", True)
    # Unset in the job, the pipeline's own settings stand.
    write_pipeline({**TINY, "train": {**TINY["train"], "distribution": "mirrored"}})
    assert load().distribution == "mirrored"
    write_pipeline({**TINY, "train": {**TINY["train"], "distribution": "multi_worker"}})
    with pytest.raises(ConfigError) as err:
        load()
    assert err.value.field == "train.distribution" and err.value.allowed == "none, mirrored"


# ---------------------------------------------------------------------- bad input, the CLI

CLUSTER = "127.0.0.1:{p0},127.0.0.1:{p1}"
MULTI = "train.distribution=multi_worker"


@pytest.mark.parametrize(
    "args, field, allowed",
    [
        (("--workers", "127.0.0.1,127.0.0.2", "--worker-index", "0", MULTI), "--workers", "host"),
        (("--workers", CLUSTER, "--worker-index", "2", MULTI), "--worker-index", "0 to 1"),
        ((MULTI,), "--workers", "--workers host:port,... and --worker-index i"),
        (("--workers", CLUSTER, "--worker-index", "0"), "--workers", MULTI),
        (("--worker-index", "1", MULTI), "--workers", "--worker-index"),
        (("train.distribution=tpu",), "train.distribution", "none, mirrored, multi_worker"),
        (("train.loop=custom", "train.distribution=mirrored"), "train.loop", "fit"),
    ],
    ids=[
        "not-host-port",
        "index-out-of-range",
        "no-workers",
        "not-multi-worker",
        "index-alone",
        "unknown-distribution",
        "custom-loop",
    ],  # fmt: skip
)
def test_bad_distributed_input_is_one_line_exit_2_and_writes_nothing(
    args, field, allowed, tmp_path, write_pipeline
):
    path = write_pipeline(TINY)
    ports = {"p0": free_port(), "p1": free_port()}
    args = [a.format(**ports) for a in args]
    store = tmp_path / "store"
    out = run_tfdl("train", path, *args, env={"MLFLOW_TRACKING_URI": f"sqlite:///{store}/m.db"})
    assert out.returncode == 2, out.stderr
    (line,) = out.stderr.splitlines()
    assert line.startswith(f"error: {field}: ") and allowed in line.partition("; allowed: ")[2]
    assert not store.exists()  # nothing written, not even the store


def test_a_search_or_sweep_over_a_multi_worker_pipeline_is_refused(tmp_path, write_pipeline):
    path = write_pipeline({**TINY, "train": {**TINY["train"], "distribution": "multi_worker"}})
    job = tmp_path / "job.yaml"
    space = {"model.units": {"type": "choice", "values": [[8], [16]]}}
    job.write_text(yaml.safe_dump({"pipeline": str(path), "space": space}))
    store = tmp_path / "store"
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{store}/m.db"}
    for command in (("tune", job), ("lr-find", path)):
        out = run_tfdl(*command, env=env)
        assert out.returncode == 2, out.stderr
        (line,) = out.stderr.splitlines()
        assert line.startswith("error: train.distribution: ") and "none, mirrored" in line
    assert not store.exists()
