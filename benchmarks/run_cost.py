"""Where a whole `tfdl train` spends its time, from process start to exit.

A fresh process imports TensorFlow and MLflow first (each timed), then trains the
pipeline through `tfdl.train` under cProfile; each phase is the cumulative time of the
function that does it. The same run without the profiler, in fresh processes, gives the
wall time the profile's overhead is measured against.
"""

import cProfile
import json
import pstats
import subprocess
import sys
import time
from statistics import median  # not benchmarks.clock's: it imports Keras before the clock

PIPELINE = "pipelines/mlp.yaml"
# The whole-process comparison's settings: 30 epochs, none cut short, a constant rate.
OVERRIDES = (
    "train.epochs=30",
    "train.verbose=0",
    "callbacks.early_stopping.patience=100",
    "callbacks.reduce_lr_on_plateau=null",
)
# phase -> (file suffix, function): a run's steps in the order they happen
PHASES = {
    "config and data": ("tfdl/api.py", "prepare"),
    "build and compile": ("tfdl/training.py", "build"),
    "open the run (params, datasets)": ("tfdl/tracking/lifecycle.py", "run_lifecycle"),
    "fit": ("tfdl/training.py", "fit"),
    "test evaluation": ("tfdl/training.py", "evaluate"),
    "pictures": ("tfdl/pictures.py", "run_pictures"),
    "log results and model": ("tfdl/tracking/records.py", "log_results"),
}


def child(profiled: bool) -> dict:
    """One whole run in this fresh process: the import times and, when `profiled`, the
    phases' cumulative seconds."""
    out = {}
    for module in ("tensorflow", "mlflow"):
        start = time.perf_counter()
        __import__(module)
        out[f"import {module}"] = time.perf_counter() - start
    import tfdl
    from benchmarks.clock import EpochClock

    class Clock(EpochClock):
        def on_train_begin(self, logs=None):
            self.began = time.perf_counter()

    clock = Clock()
    profile = cProfile.Profile() if profiled else None
    start = time.perf_counter()
    if profile:
        profile.enable()
    tfdl.train(PIPELINE, list(OVERRIDES), callbacks=[clock])
    if profile:
        profile.disable()
    out["run"] = time.perf_counter() - start
    # `full` spans an epoch's start to the next one's: its first is the first epoch.
    out["fit: first epoch"] = clock.full[0]
    out["fit: other epochs"] = clock.ended - clock.began - clock.full[0]
    if profile:
        stats = pstats.Stats(profile).stats
        for phase, (suffix, name) in PHASES.items():
            out[phase] = sum(
                s[3] for (f, _, fn), s in stats.items() if f.endswith(suffix) and fn == name
            )
    return out


def whole_process(profiled: bool) -> tuple[dict, float]:
    """(child's figures, seconds from spawning the process to its exit)."""
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "benchmarks.run_cost"]
    out = subprocess.run([*cmd, *(["--profiled"] if profiled else [])], capture_output=True)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(out.stderr.decode()[-2000:])
    return json.loads(out.stdout.decode().strip().splitlines()[-1]), seconds


def measure(repeats: int = 3) -> dict:
    """The median wall time of `repeats` plain processes, and one profiled breakdown; one
    untimed run first creates the store's tables, as a user's store already has them."""
    whole_process(False)
    plain = [whole_process(False) for _ in range(repeats)]
    profiled, profiled_s = whole_process(True)
    process_s = median([s for _, s in plain])
    imports = {k: median([p[k] for p, _ in plain]) for k in ("import tensorflow", "import mlflow")}
    run_s = median([p["run"] for p, _ in plain])
    # Python's start, tfdl's own imports and the interpreter's exit: what no phase holds.
    other = process_s - run_s - sum(imports.values())
    return {
        "pipeline": PIPELINE,
        "overrides": list(OVERRIDES),
        "repeats": repeats,
        "process_s": process_s,
        "breakdown_s": {**imports, "python start, tfdl's imports, exit": other}
        | {k: v for k, v in profiled.items() if k in PHASES},
        "fit_first_epoch_s": median([p["fit: first epoch"] for p, _ in plain]),
        "fit_other_epochs_s": median([p["fit: other epochs"] for p, _ in plain]),
        "profiled_process_s": profiled_s,
        "profiled_run_s": profiled["run"],
        "plain_run_s": run_s,
    }


if __name__ == "__main__":  # a child of measure(), in the store its parent set
    print(json.dumps(child("--profiled" in sys.argv)))
