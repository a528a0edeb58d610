"""A whole `tfdl train` against the scripts a user would write instead, process start to exit.

The digits MLP of pipelines/mlp.yaml trained for the same epochs (none cut short, a
constant learning rate) three ways, each a fresh process:

- tfdl: the CLI, `tfdl train pipelines/mlp.yaml` with run_cost's overrides, tracked into
  a temporary sqlite store with the pictures and model it logs as shipped;
- plain: benchmarks/plain_digits.py, untracked Keras (`--no-stop`);
- autolog: benchmarks/autolog_digits.py, the plain script with mlflow.tensorflow.autolog()
  into another temporary sqlite store.

One untimed round first creates both stores' tables and experiments, as a user's store
already has them. Then the three alternate, repeat by repeat, so drift in the machine hits
each alike: seconds from spawning each to its exit, medians per way, and the ratios
tfdl/plain and tfdl/autolog as the median of each repeat's ratio.

    TFDL_BENCH_REPEATS=1 python -m benchmarks.run whole_run   # repeats, 3 by default
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median  # not benchmarks.clock's: it imports Keras, unneeded here

from benchmarks.run_cost import OVERRIDES, PIPELINE

PROJECT = Path(__file__).resolve().parent.parent
WAYS = ("tfdl", "plain", "autolog")
EPOCHS = int(dict(o.split("=", 1) for o in OVERRIDES)["train.epochs"])
REPEATS = 3


def repeats_wanted() -> int:
    """TFDL_BENCH_REPEATS, or REPEATS."""
    raw = os.environ.get("TFDL_BENCH_REPEATS", "").strip()
    if not raw:
        return REPEATS
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"TFDL_BENCH_REPEATS: {raw!r} is not a whole number >= 1")
    return int(raw)


def commands(store: Path) -> dict[str, tuple[list[str], dict]]:
    """Each way's command line and environment, its MLflow store (if any) under `store`."""
    python, script = sys.executable, ["mlp", "--epochs", str(EPOCHS), "--no-stop"]
    tfdl_store = {"MLFLOW_TRACKING_URI": f"sqlite:///{store / 'tfdl' / 'mlflow.db'}"}
    return {
        "tfdl": (
            [python, "-m", "tfdl.cli", "train", PIPELINE, *OVERRIDES],
            os.environ | tfdl_store,
        ),
        "plain": ([python, "-m", "benchmarks.plain_digits", *script], dict(os.environ)),
        "autolog": (
            [python, "-m", "benchmarks.autolog_digits", "--store", str(store / "autolog"), *script],
            dict(os.environ),
        ),
    }


def timed(command: list[str], env: dict | None = None) -> float:
    """Seconds from spawning `command` (in the project folder) to its exit; a child that
    fails raises, with the end of its stderr."""
    start = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=PROJECT)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command[1:])} exited with {out.returncode}: {out.stderr[-2000:]}"
        )
    return seconds


def order(repeats: int) -> list[str]:
    """The ways in the order they run: tfdl, plain, autolog, tfdl, plain, autolog, ..."""
    return [way for _ in range(repeats) for way in WAYS]


def summary(runs: list[dict[str, float]]) -> dict:
    """Medians and ratios of each repeat's seconds per way."""
    return {
        "pipeline": PIPELINE,
        "overrides": list(OVERRIDES),
        "epochs": EPOCHS,
        "repeats": len(runs),
        "runs_s": runs,
        "median_s": {way: median(r[way] for r in runs) for way in WAYS},
        "tfdl/plain": median(r["tfdl"] / r["plain"] for r in runs),
        "tfdl/autolog": median(r["tfdl"] / r["autolog"] for r in runs),
    }


def measure(repeats: int | None = None) -> dict:
    repeats = repeats or repeats_wanted()
    with tempfile.TemporaryDirectory() as store:
        ways = commands(Path(store))
        for way in WAYS:  # untimed: the stores' tables and experiments, as a user has them
            timed(*ways[way])
        runs = [{} for _ in range(repeats)]
        for i, way in enumerate(order(repeats)):
            runs[i // len(WAYS)][way] = timed(*ways[way])
    return summary(runs)


if __name__ == "__main__":
    import json

    print(json.dumps(measure(), indent=2))
