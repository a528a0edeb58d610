"""On a GPU (marked gpu, `make test-gpu`; skipped with the reason where TensorFlow sees
none): every architecture trains an epoch in mixed precision, and a search runs with its
GPU's memory growing as needed. Without a GPU, what of this can be checked still is:
`make bench-gpu` says in one line that it has nothing to measure, and XLA and the compute
dtype in effect are read from the compiled model, not from what was asked."""

import json
import math
import os
import subprocess
import sys

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tfdl.models.schema import ARCHITECTURES

from .conftest import PROJECT, has_gpu
from .test_pipelines import offline

SHIPPED = sorted((PROJECT / "pipelines").glob("*.yaml"))
# One shipped pipeline per architecture: the first, by name, that trains it.
BY_ARCH = {
    arch: next(p for p in SHIPPED if yaml.safe_load(p.read_text())["model"]["arch"] == arch)
    for arch in sorted(ARCHITECTURES)
}
GPU_HERE = "this machine has a GPU: make bench-gpu would measure it"


@pytest.mark.gpu
@pytest.mark.parametrize("arch", sorted(BY_ARCH))
def test_every_architecture_trains_an_epoch_in_mixed_precision(arch, store, tmp_path):
    import tfdl
    from benchmarks.gpu import in_effect

    path = BY_ARCH[arch]
    overrides = [*offline(path, tmp_path), "train.epochs=1", "train.mixed_precision=true"]
    result = tfdl.train(path, overrides)
    assert in_effect(result.model)["compute_dtype"] == "float16"
    assert all(out.dtype == "float32" for out in result.model.outputs)  # the outputs stay float32
    assert all(math.isfinite(v) for v in result.history["loss"])
    run = MlflowClient().get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.params["train.mixed_precision"] == "True"


@pytest.mark.gpu
def test_a_search_runs_on_the_gpu_with_memory_growth(search_job, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = search_job(epochs=1, mixed_precision=True)  # 2 trials, in this one process
    # A fresh process, as `tfdl tune` is: memory growth can only be set before TensorFlow
    # sets up the GPU. The variable that turns it on for the test processes is left out.
    env = {k: v for k, v in os.environ.items() if k != "TF_FORCE_GPU_ALLOW_GROWTH"}
    script = (
        "import json, sys, tfdl, tensorflow as tf; r = tfdl.tune(sys.argv[1]); "
        "gpus = tf.config.list_physical_devices('GPU'); "
        "print(json.dumps([tf.config.experimental.get_memory_growth(g) for g in gpus]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**env, "MLFLOW_TRACKING_URI": uri},
    )
    assert done.returncode == 0, done.stderr
    growth = json.loads(done.stdout.strip().splitlines()[-1])
    assert growth and all(growth)  # every GPU grows its memory as needed
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("search").experiment_id])
    kinds = sorted((r.data.tags["tfdl.kind"], r.info.status) for r in runs)
    assert kinds == [("search", "FINISHED"), ("trial", "FINISHED"), ("trial", "FINISHED")]


# ------------------------------------------------------------------ without a GPU as well


@pytest.mark.skipif(has_gpu(), reason=GPU_HERE)
def test_make_bench_gpu_without_a_gpu_says_so_in_one_line_and_exits_0():
    results = PROJECT / "benchmarks" / "results" / "gpu.json"
    before = results.stat().st_mtime if results.exists() else None
    # The target's command as make runs it (-o: not reinstalling, whatever the files' times).
    recipe = subprocess.run(
        ["make", "-s", "-n", "-o", ".venv/bin/tfdl", "bench-gpu"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert recipe == ".venv/bin/python -m benchmarks.gpu"
    done = subprocess.run(
        [PROJECT / ".venv" / "bin" / "python", "-m", "benchmarks.gpu"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.strip().splitlines()
    assert line.startswith("bench-gpu: ") and line.endswith("nothing measured"), line
    assert done.stderr == ""
    assert (results.stat().st_mtime if results.exists() else None) == before  # nothing written


def test_xla_and_precision_in_effect_are_read_from_the_compiled_model(tmp_path):
    from benchmarks.gpu import MODELS, in_effect
    from tfdl.config import load_pipeline
    from tfdl.prepared import prepare
    from tfdl.training import build

    def compiled(path, *overrides):
        path = PROJECT / path
        return build(prepare(load_pipeline(path, [*offline(path, tmp_path), *overrides])))

    for pipeline in MODELS.values():  # the benchmark's models: XLA compiles them whole
        assert in_effect(compiled(pipeline, "train.jit_compile=true"))["xla"] is True
    assert in_effect(compiled("pipelines/mlp.yaml", "train.jit_compile=false"))["xla"] is False
    # cnn2d's RandomRotation cannot be compiled: Keras trains without XLA, warning only.
    with pytest.warns(UserWarning, match="jit_compile"):
        cnn = compiled("pipelines/cnn2d.yaml", "train.jit_compile=true")
    assert in_effect(cnn)["xla"] is False
    assert in_effect(compiled("pipelines/mlp.yaml"))["compute_dtype"] == "float32"
    mixed = compiled("pipelines/mlp.yaml", "train.mixed_precision=true")
    assert in_effect(mixed)["compute_dtype"] == "float16"
