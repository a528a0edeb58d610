"""`make bench-gpu` (python -m benchmarks.gpu): what a GPU changes, in at most 10 minutes.

On the first GPU: training throughput (samples/s over the steady epochs, as
benchmarks/throughput.py takes it) of `fit` and of the lecture's loop (`train.loop:
custom`), each with and without mixed precision (`train.mixed_precision`) and XLA
(`train.jit_compile`), on models XLA compiles whole: deep_mlp, gru, transformer_encoder.
(cnn2d's RandomRotation is a layer XLA cannot compile; Keras then trains without XLA and
says so only in a warning.) Each row records what it ran with as read from the compiled
model, beside what was asked: Keras's resolved `jit_compile`, which `fit` and the lecture's
loop both compile their step with, and the dtype its layers compute in. Then a search of 4
trials with `distribution: mirrored` (one replica per GPU). The measurements that would
run past the time budget are listed as skipped.

Writes results/gpu.json and results/gpu.md, and prints the table. Without a GPU it prints
one line saying so, writes nothing and exits 0.

    python -m benchmarks.gpu [--budget-s 540] [--models deep_mlp gru]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT / "benchmarks" / "results"
# Models whose whole step XLA compiles, in their shipped pipelines.
MODELS = {
    "deep_mlp": "pipelines/mlp.yaml",
    "gru": "pipelines/gru.yaml",
    "transformer_encoder": "pipelines/transformer_encoder.yaml",
}
LOOPS = ("fit", "custom")
EPOCHS = 6  # the first traces and compiles; the median of the other five is quoted
BUDGET_S = 540  # the whole benchmark, start-up included, within 10 minutes
SEARCH_S = 150  # kept for the search at the end
SEARCH = "tuning/mlp_random.yaml"
SEARCH_TRIALS = 4


def no_gpu() -> str | None:
    """Why nothing can be measured here, or None when TensorFlow sees a GPU. Without an
    NVIDIA driver that is known before TensorFlow loads."""
    from tfdl.search_workers import visible_gpus

    if not visible_gpus():
        return "bench-gpu: no GPU on this machine (nvidia-smi lists none); nothing measured"
    if gpu_name() is None:
        return (
            "bench-gpu: TensorFlow sees no GPU (install the gpu extra: pip install -e '.[gpu]'); "
            "nothing measured"
        )
    return None


def gpu_name() -> str | None:
    """The first GPU's name as TensorFlow reports it; None without one."""
    from tfdl.runtime import import_tensorflow

    import_tensorflow()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    return tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)


def in_effect(model) -> dict:
    """What a compiled model trains with, read from it: XLA as Keras resolved
    `jit_compile` (False where a layer cannot be compiled, whatever was asked; `fit` and
    the lecture's loop compile their step with it) and the dtype its layers compute in."""
    dtypes = {layer.compute_dtype for layer in _layers(model)} - {None}
    return {
        "xla": bool(model.jit_compile),
        "compute_dtype": "float16" if "float16" in dtypes else "float32",
    }


def _layers(layer):
    yield layer
    for inner in getattr(layer, "layers", None) or ():
        yield from _layers(inner)


def throughput(name: str, loop: str, mixed: bool, xla: bool, splits=None) -> tuple[dict, object]:
    """samples/s of one model trained untracked (the callback stack, no MLflow) with the
    loop, mixed precision and XLA asked, and what it ran with, read from the model; and
    the data it loaded (`splits`: given, none is loaded)."""
    import keras

    from benchmarks.clock import EpochClock
    from tfdl.config import load_pipeline
    from tfdl.prepared import prepare
    from tfdl.training import build, fit

    overrides = [
        f"train.epochs={EPOCHS}",
        "train.verbose=0",
        f"train.loop={loop}",
        f"train.mixed_precision={str(mixed).lower()}",
        f"train.jit_compile={str(xla).lower()}",
    ]
    p = prepare(load_pipeline(PROJECT / MODELS[name], overrides), splits=splits)
    model = build(p)
    clock = EpochClock()
    fit(model, p, callbacks=[clock])
    row = {
        "model": name,
        "loop": loop,
        "mixed_precision": mixed,
        "jit_compile": xla,
        **in_effect(model),
        "samples_per_s": len(p.splits.y_train) / clock.steady(),
        "epoch_s": clock.steady(),
    }
    keras.backend.clear_session()
    return row, p.splits


def grid(models=tuple(MODELS), deadline: float = float("inf")) -> list[dict]:
    """Every model x loop x mixed precision x XLA; a measurement that would start past
    `deadline` (time.monotonic) is a row saying it was skipped."""
    rows = []
    for name in models:
        splits = None  # the model's data, loaded once
        for loop in LOOPS:
            for mixed in (False, True):
                for xla in (False, True):
                    asked = {"model": name, "loop": loop, "mixed_precision": mixed}
                    asked["jit_compile"] = xla
                    if time.monotonic() > deadline:
                        rows.append({**asked, "skipped": "over the time budget"})
                        continue
                    row, splits = throughput(name, loop, mixed, xla, splits)
                    rows.append(row)
                    print(_line(row), flush=True)
    return rows


def mirrored_search(trials: int = SEARCH_TRIALS, epochs: int = 2) -> dict:
    """`tfdl tune` of a search with `distribution: mirrored`, `trials` trials of `epochs`
    epochs in a fresh process against a store of its own: its seconds, how its runs ended
    and how many replicas trained each trial."""
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{folder}/mlflow.db"
        settings = [f"max_trials={trials}", f"epochs={epochs}", "distribution=mirrored"]
        cmd = [sys.executable, "-m", "tfdl.cli", "tune", SEARCH, *settings, "--overwrite"]
        start = time.perf_counter()
        out = subprocess.run(
            cmd,
            cwd=PROJECT,
            capture_output=True,
            text=True,
            env={**os.environ, "MLFLOW_TRACKING_URI": uri},
        )
        seconds = time.perf_counter() - start
        if out.returncode != 0:
            return {"failed": out.stderr.strip().splitlines()[-1:], "seconds": seconds}
        client = MlflowClient(uri)
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        trial_runs = [r for r in runs if r.data.tags.get("tfdl.kind") == "trial"]
        parent = next(r for r in runs if r.data.tags.get("tfdl.kind") == "search")
        replicas = {r.data.tags.get("tfdl.replicas") for r in trial_runs} - {None}
    return {
        "trials": len(trial_runs),
        "statuses": sorted({r.info.status for r in trial_runs}),
        "search_status": parent.info.status,
        "replicas": sorted(replicas) or _replicas(),
        "seconds": seconds,
        "s_per_trial": seconds / max(len(trial_runs), 1),
    }


def _replicas() -> list[str]:
    """Replicas of a mirrored strategy here (one per GPU), where the runs do not say."""
    import tensorflow as tf

    return [str(len(tf.config.list_physical_devices("GPU")))]


def measure(budget_s: float = BUDGET_S - SEARCH_S) -> dict[str, float]:
    """samples/s by measurement, for `make bench` (benchmarks/run.py): each labelled
    with what it ran with."""
    rows = grid(deadline=time.monotonic() + budget_s)
    return {_label(r): r["samples_per_s"] for r in rows if "samples_per_s" in r}


def _label(r: dict) -> str:
    if "skipped" in r:
        return f"{r['model']} {r['loop']}"
    return f"{r['model']} {r['loop']} {r['compute_dtype']} xla={r['xla']}"


def _line(r: dict) -> str:
    asked = f"(asked: mixed {_on(r['mixed_precision'])}, xla {_on(r['jit_compile'])})"
    if "skipped" in r:
        return f"{r['model']:<20} {r['loop']:<6} skipped: {r['skipped']} {asked}"
    effect = f"{r['compute_dtype']:<7} xla {_on(r['xla']):<3} {r['samples_per_s']:>10.0f} samples/s"
    return f"{r['model']:<20} {r['loop']:<6} {effect} {asked}"


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def report(result: dict) -> str:
    """results/gpu.md: the machine, the throughput table and the search."""
    lines = [
        "# GPU benchmark (make bench-gpu)",
        "",
        f"{result['date']} on {result['gpu']}, TensorFlow {result['tensorflow']}; "
        f"{result['seconds']:.0f} s in all. Samples/s over steady epochs (the median after "
        f"the first of {EPOCHS}); XLA and compute dtype as read from the compiled model.",
        "",
        "| model | loop | mixed asked | XLA asked | computes in | XLA in effect | samples/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["throughput"]:
        mixed, xla = _on(r["mixed_precision"]), _on(r["jit_compile"])
        asked = f"| {r['model']} | {r['loop']} | {mixed} | {xla} |"
        if "skipped" in r:
            lines.append(f"{asked} skipped: {r['skipped']} | | |")
        else:
            effect = f" {r['compute_dtype']} | {_on(r['xla'])} | {r['samples_per_s']:.0f} |"
            lines.append(asked + effect)
    s = result["search"]
    lines += ["", f"Search ({SEARCH}, {SEARCH_TRIALS} trials, distribution: mirrored): "]
    if "failed" in s:
        lines[-1] += f"failed: {' '.join(s['failed'])}"
    elif "skipped" in s:
        lines[-1] += f"skipped: {s['skipped']}"
    else:
        lines[-1] += (
            f"{s['trials']} trials {'/'.join(s['statuses'])}, search {s['search_status']}, "
            f"{', '.join(s['replicas'])} replica(s), {s['seconds']:.0f} s "
            f"({s['s_per_trial']:.1f} s a trial, start-up included)"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__)
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="the whole run's budget")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    args = parser.parse_args(argv)
    start = time.monotonic()
    reason = no_gpu()
    if reason:
        print(reason)
        return 0
    import datetime

    import tensorflow as tf

    from tfdl.distribute import grow_gpu_memory

    grow_gpu_memory()  # the search's process shares the GPU with this one
    name = gpu_name()
    print(f"GPU: {name}", flush=True)
    rows = grid(args.models, deadline=start + args.budget_s - SEARCH_S)
    left = start + args.budget_s - time.monotonic()
    search = mirrored_search() if left > SEARCH_S / 2 else {"skipped": "over the time budget"}
    result = {
        "gpu": name,
        "gpus": len(tf.config.list_physical_devices("GPU")),
        "date": datetime.date.today().isoformat(),
        "tensorflow": tf.__version__,
        "throughput": rows,
        "search": search,
        "seconds": time.monotonic() - start,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")
    text = report(result)
    (RESULTS / "gpu.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
