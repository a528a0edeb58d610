"""Where a whole `tfdl train` spends its time, from process start to exit.

Fresh processes each import TensorFlow and MLflow first (timed), then train the pipeline
through `tfdl.train` with the functions that make up a run wrapped in timers (no
profiler, so no phase is inflated by one); fit's first epoch, which traces and compiles,
is timed apart. What no phase holds: starting Python, tfdl's own imports, and exiting.
"""

import contextlib
import functools
import json
import time
from collections import defaultdict
from statistics import median  # not benchmarks.clock's: it imports Keras before the clock

from benchmarks.run import spawned

PIPELINE = "pipelines/mlp.yaml"
# The whole-process comparison's settings: 30 epochs, none cut short, a constant rate.
OVERRIDES = (
    "train.epochs=30",
    "train.verbose=0",
    "callbacks.early_stopping.patience=100",
    "callbacks.reduce_lr_on_plateau=null",
)
IMPORTS = ("tensorflow", "mlflow")


def _timed(spent: dict, owner, name: str, phase: str) -> None:
    """Replace `owner.name` by the same function adding its seconds to `spent[phase]`."""
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[phase] += time.perf_counter() - start

    setattr(owner, name, wrapper)


def child() -> dict:
    """One whole run in this fresh process: seconds per import and per phase."""
    spent = defaultdict(float)
    for module in IMPORTS:
        start = time.perf_counter()
        __import__(module)
        spent[f"import {module}"] = time.perf_counter() - start
    import tfdl
    from benchmarks.clock import EpochClock
    from tfdl import prepared, tracking, training

    # tfdl.train imports prepare from its module at each call, so the module's is timed
    _timed(spent, prepared, "prepare", "config and data")
    _timed(spent, training, "build", "build and compile")
    _timed(spent, training, "evaluate", "test evaluation")
    _timed(spent, training, "run_pictures", "pictures")
    _timed(spent, tracking, "log_results", "log results and model")
    opened = tracking.training_run

    @contextlib.contextmanager
    def training_run(*args, **kwargs):
        start = time.perf_counter()
        with opened(*args, **kwargs) as run_id:
            spent["open the run (params, datasets)"] += time.perf_counter() - start
            yield run_id
            start = time.perf_counter()
        spent["end the run"] += time.perf_counter() - start

    tracking.training_run = training_run

    class Clock(EpochClock):
        def on_train_begin(self, logs=None):
            self.began = time.perf_counter()

    clock = Clock()
    start = time.perf_counter()
    tfdl.train(PIPELINE, list(OVERRIDES), callbacks=[clock])
    run = time.perf_counter() - start
    # `full` spans an epoch's start to the next one's: its first is the first epoch.
    spent["fit: first epoch (tracing, compiling)"] = clock.full[0]
    spent["fit: the other epochs"] = clock.ended - clock.began - clock.full[0]
    spent["rest of the run"] = run - sum(v for k, v in spent.items() if not k.startswith("import"))
    return dict(spent) | {"run": run}


def measure(repeats: int = 3) -> dict:
    """Medians over `repeats` fresh processes; one untimed run first creates the store's
    tables, as a user's store already has them."""
    spawned("benchmarks.run_cost")
    runs = [spawned("benchmarks.run_cost") for _ in range(repeats)]
    process_s = median([s for _, s in runs])
    phases = {k: median([r[k] for r, _ in runs]) for k in runs[0][0] if k != "run"}
    imports = sum(v for k, v in phases.items() if k.startswith("import"))
    outside = process_s - median([r["run"] for r, _ in runs]) - imports
    return {
        "pipeline": PIPELINE,
        "overrides": list(OVERRIDES),
        "repeats": repeats,
        "process_s": process_s,
        "breakdown_s": {"python start, tfdl's imports, exit": outside} | phases,
    }


if __name__ == "__main__":  # a child of measure(), in the store its parent set
    import gc

    print(json.dumps(child()), flush=True)
    gc.freeze()  # and exit as the `tfdl` command does (tfdl.cli.run)
