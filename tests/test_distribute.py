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
from tfdl.config import load_pipeline, load_tuning, validate
from tfdl.errors import ConfigError
from tfdl.prepared import prepare
from tfdl.store import open_sqlite

from .conftest import PROJECT, TINY, free_port, run_tfdl, start_tfdl
from .test_gpu import BY_ARCH  # one shipped pipeline per architecture
from .test_pipelines import offline
from .test_search_workers import alive

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


# ------------------------------------------------------------------ mixed precision on a CPU


@pytest.mark.parametrize("arch", sorted(BY_ARCH))
def test_every_architecture_takes_a_mixed_precision_step_on_a_cpu(arch, tmp_path):
    """Layers compute in float16, weights stay float32, and so do the outputs: every loss
    tfdl offers then meets float32, so none has to be refused under mixed precision."""
    import keras

    from tfdl.training import build

    path = BY_ARCH[arch]
    p = prepare(load_pipeline(path, [*offline(path, tmp_path), "train.mixed_precision=true"]))
    model = build(p)
    assert keras.mixed_precision.global_policy().name == "float32"  # left as it was
    assert "float16" in {layer.compute_dtype for layer in model.layers}
    assert all(w.dtype == "float32" for w in model.trainable_weights)
    assert all(out.dtype == "float32" for out in model.outputs)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    x, y = next(iter(p.dataset("train")))
    before = [w.numpy() for w in model.trainable_weights]
    model.jit_compile = False  # XLA's compile would take most of the test's time
    loss = model.train_on_batch(x, y, return_dict=True)["loss"]
    assert np.isfinite(loss)
    after = [w.numpy() for w in model.trainable_weights]
    assert any(
        not np.array_equal(a, b) for a, b in zip(before, after, strict=True)
    )  # the scaled gradients reached the float32 weights


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


# ------------------------------------------------------------ mirrored: two devices, one batch

# Two logical CPU devices exist only if they are set before TensorFlow initialises: the
# comparison runs in a process of its own, both runs in it, on the same seed and batches.
MIRRORED_VS_ONE_DEVICE = """
import json, sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
import tfdl
from tfdl import distribute

pipeline, out = json.loads(sys.argv[1]), sys.argv[2]
found, weights = {"devices": len(tf.config.list_logical_devices("CPU"))}, {}
for distribution in ("none", "mirrored"):
    result = tfdl.train({**pipeline, "train": {**pipeline["train"], "distribution": distribution}})
    found[distribution] = {"run_id": result.run_id, "history": result.history}
    for i, w in enumerate(result.model.get_weights()):
        weights[f"{distribution}_{i}"] = w
found["replicas"] = distribute.replicas("mirrored")
np.savez(out + ".npz", **weights)
with open(out + ".json", "w") as f:
    json.dump(found, f)
"""


def test_mirrored_on_two_cpu_devices_trains_as_one_device_does(tmp_path, store):
    # 1216 training rows (test_fraction 0.173), 19 whole batches of 64 an epoch. With a final
    # partial batch (1257 rows: 41) the two runs part: its 21 + 20 rows split between the
    # replicas, Keras averages each replica's loss and halves the sum, so those rows weigh
    # 1/42 and 1/40 instead of 1/41 (measured: weights 2e-3 apart after 3 epochs).
    # input tf_data: the one-device run reads the batches tf.data gives the mirrored one
    # (a held split is for one device only).
    pipeline = {
        **TINY,
        "data": {"source": "digits", "test_fraction": 0.173},
        "train": {**TINY["train"], "epochs": 3, "input": "tf_data"},
        "tracking": {"experiment": "mirrored", "log_model": False},
    }
    out = tmp_path / "found"
    done = subprocess.run(
        [sys.executable, "-c", MIRRORED_VS_ONE_DEVICE, json.dumps(pipeline), str(out)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads((tmp_path / "found.json").read_text())
    weights = np.load(tmp_path / "found.npz")
    assert found["devices"] == 2 and found["replicas"] == 2
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")  # the subprocess's store
    tags = {d: client.get_run(found[d]["run_id"]).data.tags for d in ("none", "mirrored")}
    assert tags["mirrored"]["tfdl.replicas"] == "2" and "tfdl.replicas" not in tags["none"]
    one, mirrored = found["none"]["history"], found["mirrored"]["history"]
    assert mirrored["loss"] == sorted(mirrored["loss"], reverse=True)  # it trains
    assert mirrored["loss"][-1] < 0.5 * mirrored["loss"][0]
    # Measured: losses 3e-7 apart (relative), weights 2e-7 (absolute; the largest is ~0.7):
    # float32 sums taken in another order. The tolerances leave 30-50 times that.
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(mirrored[key], one[key], rtol=1e-5, err_msg=key)
    n = len(weights.files) // 2
    for i in range(n):
        np.testing.assert_allclose(weights[f"mirrored_{i}"], weights[f"none_{i}"], atol=1e-5)


# ------------------------------------------------------------------ two workers on loopback


def start_workers(pipeline, uri: str, n: int = 2, resume: str | None = None):
    """Every worker of a cluster of `n` on 127.0.0.1 (new ports), each a real `tfdl train`
    process of `pipeline`, or resuming run `resume`; the chief (worker 0) first. Returns
    the processes and the cluster's `--workers`."""
    workers = ",".join(f"127.0.0.1:{free_port()}" for _ in range(n))
    what = ("--resume", resume) if resume else (pipeline, MULTI)
    procs = [
        start_tfdl("train", *what, "--workers", workers, "--worker-index", i, uri=uri)
        for i in range(n)
    ]
    return procs, workers


def finish_workers(procs, timeout: float):
    """The (stdout, stderr) of every worker once all have ended, each with exit code 0."""
    try:
        outputs = [proc.communicate(timeout=timeout) for proc in procs]
    finally:
        stop(procs)
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    return outputs


def stop(procs):
    """Whatever of `procs` still runs, killed, and every one reaped."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def the_run(client):
    """The one run of the store, whatever its experiment and state."""
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    (run,) = client.search_runs(experiments, run_view_type=ViewType.ALL)
    return run


@pytest.mark.slow
def test_two_workers_train_one_run_that_the_chief_records(tmp_path, write_pipeline):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    procs, workers = start_workers(write_pipeline(TINY), uri)
    (out0, _), (out1, _) = finish_workers(procs, timeout=240)
    assert out1.splitlines()[-1].startswith("worker 1 finished: test_accuracy=")
    assert out1.splitlines()[-1].endswith("; worker 0 recorded the run")
    client = MlflowClient(uri)
    run = the_run(client)
    run_id = run.info.run_id
    assert f"run {run_id} finished" in out0
    assert run.info.status == "FINISHED" and "tfdl.error" not in run.data.tags
    assert run.data.tags["tfdl.replicas"] == "2" and run.data.tags["tfdl.workers"] == workers
    for key in ("loss", "val_loss", "accuracy"):
        assert [m.step for m in client.get_metric_history(run_id, key)] == [1, 2], key
    # The logged model is the trained one: its accuracy on the test split is the run's.
    mlflow.set_tracking_uri(uri)  # what runs:/ resolves against
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    splits = prepare(validate(TINY)).splits
    predicted = np.asarray(model.predict(splits.x_test.astype("float32"))).argmax(axis=1)
    accuracy = float(np.mean(predicted == splits.y_test))
    assert accuracy == pytest.approx(run.data.metrics["test_accuracy"], abs=1e-6)


def wait_for_epochs(client, n: int, procs, timeout: float = 180):
    """The run once it has logged `n` epochs; fails at once if a worker ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        for proc in procs:
            assert proc.poll() is None, proc.communicate()
        exp = client.get_experiment_by_name("test")
        found = client.search_runs([exp.experiment_id]) if exp else []
        if found and len(client.get_metric_history(found[0].info.run_id, "loss")) >= n:
            return found[0]
    raise AssertionError(f"the run never logged {n} epochs")


@pytest.mark.slow
def test_a_worker_killed_fails_the_chiefs_run_at_once_naming_the_worker(tmp_path, write_pipeline):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    open_sqlite(uri)  # polling a store the chief is still creating would race it
    # Batch 8, one step per call: ~150 trips through Python an epoch, 30 epochs to go.
    train = {**TINY["train"], "epochs": 30, "batch_size": 8, "steps_per_execution": 1}
    procs, workers = start_workers(write_pipeline({**TINY, "train": train}), uri)
    try:
        client = MlflowClient(uri)
        run = wait_for_epochs(client, 2, procs)
        procs[1].send_signal(signal.SIGKILL)  # as the out-of-memory killer would
        killed = time.monotonic()
        _, err = procs[0].communicate(timeout=120)
        took = time.monotonic() - killed
    finally:
        stop(procs)
    # The watchdog finds the port closed within a few probes (measured: 0.2-3.2 s).
    assert took < 30 and procs[0].returncode not in (0, None)
    (line,) = err.strip().splitlines()
    lost = workers.split(",")[1]
    assert line.startswith("error: ") and f"worker 1 ({lost})" in line and "FAILED" in line
    run = client.get_run(run.info.run_id)
    assert run.info.status in ("FAILED", "KILLED")
    epochs = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert epochs == list(range(1, len(epochs) + 1)) and 2 <= len(epochs) < 30


@pytest.mark.slow
def test_a_run_whose_worker_was_killed_resumes_on_both_workers_from_the_chiefs_backup(
    tmp_path, write_pipeline
):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    open_sqlite(uri)
    train = {**TINY["train"], "epochs": 12, "batch_size": 8, "steps_per_execution": 1}
    procs, _ = start_workers(write_pipeline({**TINY, "train": train}), uri)
    try:
        client = MlflowClient(uri)
        run_id = wait_for_epochs(client, 3, procs).info.run_id
        procs[1].send_signal(signal.SIGKILL)
        procs[0].communicate(timeout=120)
    finally:
        stop(procs)
    assert client.get_run(run_id).info.status in ("FAILED", "KILLED")
    logged = [m.step for m in client.get_metric_history(run_id, "loss")]
    stamp = json.loads(
        (tmp_path / "backups" / run_id / "backup" / "training_metadata.json").read_text()
    )
    assert 1 <= stamp["epoch"] <= len(logged) < 12  # every worker backed up each epoch

    # The same cluster again (new ports): the chief reopens the run from its backup, the
    # other worker copies it, and both go on from the same epoch with the same weights.
    again, _ = start_workers(None, uri, resume=run_id)
    (out0, _), (out1, _) = finish_workers(again, timeout=300)
    assert f"run {run_id} finished" in out0 and out1.splitlines()[-1].startswith("worker 1 ")
    assert client.get_run(run_id).info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run_id, "loss")]
    assert steps == list(range(1, 13))  # each epoch once: nothing lost, nothing twice
    assert not (tmp_path / "backups" / run_id).exists()  # finished: nothing to resume


# ------------------------------------------------------------------ make train-distributed

# Stands in for tfdl: notes its arguments, and its process id in the last line, in a file
# per worker; the chief exits with $CHIEF_EXIT once every worker has started, and a worker
# of a failing chief waits as one still joining the cluster does, SIGTERM ignored.
STUB = """#!/bin/sh
for index; do :; done
printf '%s\\n%s\\n' "$*" "$$" > "$CALLS/$index.new" && mv "$CALLS/$index.new" "$CALLS/$index"
if [ "$index" = 0 ]; then
  for _ in $(seq 100); do [ "$(ls "$CALLS" | wc -l)" -ge "$WORKERS" ] && break; sleep 0.1; done
  exit "$CHIEF_EXIT"
fi
[ "$CHIEF_EXIT" = 0 ] || { trap '' TERM; exec sleep 60; }
"""


def make_bin(folder: Path, tfdl: str) -> Path:
    """A folder standing for .venv/bin: this interpreter as `python`, `tfdl` the script."""
    folder.mkdir()
    for name, text in (("python", f'#!/bin/sh\nexec {sys.executable} "$@"\n'), ("tfdl", tfdl)):
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    return folder


def make_train_distributed(bin_: Path, *settings, env=None, timeout=60):
    return subprocess.run(
        ["make", "-s", "-o", f"{bin_}/tfdl", "train-distributed", f"BIN={bin_}", *settings],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("chief_exit", [0, 3])
def test_make_train_distributed_starts_every_worker_and_stops_them_with_the_chief(
    chief_exit, tmp_path
):
    bin_, calls = make_bin(tmp_path / "bin", STUB), tmp_path / "calls"
    calls.mkdir()
    env = {"CALLS": str(calls), "CHIEF_EXIT": str(chief_exit), "WORKERS": "3"}
    started = time.monotonic()
    done = make_train_distributed(
        bin_, "WORKERS=3", "PIPELINE=p.yaml", "ARGS=train.epochs=1 train.seed=7", env=env
    )
    took = time.monotonic() - started
    first = done.stdout.splitlines()[0]
    workers = first.split(" ")[3].rstrip(":")
    assert first == f"3 workers on {workers}: worker 0 records the run"
    ports = [w.removeprefix("127.0.0.1:") for w in workers.split(",")]
    assert len(set(ports)) == 3 and all(p.isdigit() for p in ports)
    lines = {i: (calls / str(i)).read_text().splitlines() for i in range(3)}
    for i, (args, _) in lines.items():
        assert args == (
            "train p.yaml train.epochs=1 train.seed=7 train.distribution=multi_worker "
            f"--workers {workers} --worker-index {i}"
        )
    if chief_exit == 0:
        assert done.returncode == 0, done.stderr
        return
    # The chief's failure is make's, and its workers are stopped: the ones ignoring
    # SIGTERM (as a worker still joining the cluster does) by SIGKILL 5 s later.
    assert done.returncode == 2 and "Error 3" in done.stderr
    assert took < 30
    for i in (1, 2):
        assert not alive(int(lines[i][1])), f"worker {i} still runs"


@pytest.mark.slow
def test_make_train_distributed_trains_one_run_over_two_workers(tmp_path, write_pipeline):
    tfdl = f'#!/bin/sh\nexec {sys.executable} -m tfdl.cli "$@"\n'  # this checkout's tfdl
    bin_ = make_bin(tmp_path / "bin", tfdl)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    pipeline = write_pipeline(TINY)
    done = make_train_distributed(
        bin_,
        "WORKERS=2",
        f"PIPELINE={pipeline}",
        "ARGS=train.epochs=1",
        env={"MLFLOW_TRACKING_URI": uri},
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    assert "worker 1 finished" in done.stdout and "; worker 0 recorded the run" in done.stdout
    client = MlflowClient(uri)
    run = the_run(client)
    assert run.info.status == "FINISHED" and run.data.tags["tfdl.replicas"] == "2"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1]


def test_a_multi_worker_pipeline_built_without_its_cluster_is_refused_in_one_line():
    # The Python API has no --workers: building such a pipeline outside `tfdl train
    # --workers` is the same one-line error the command gives.
    from tfdl.training import build

    p = prepare(validate({**TINY, "train": {**TINY["train"], "distribution": "multi_worker"}}))
    with pytest.raises(ConfigError, match="multi_worker needs the cluster") as err:
        build(p)
    assert "\n" not in str(err.value) and err.value.field == "workers"
