"""Scaling: what an epoch costs, in time and memory, as the data set grows.

Two sources that read from disk, each at 1k, 10k and 100k samples: a `cnn2d` on a
generated folder of 32x32 pictures (`image_folder`), and a small `deep_mlp` on a generated
CSV of 20 numeric columns (`csv`, `streaming: on`), both with `cache: none`. At every size:

- samples/s of a training epoch: the training loop alone (validation excluded), the
  median over the epochs after the first, which also traces and compiles the model (a
  fixed cost that would make the small sizes look slow; its rate is kept as well). A run
  has enough epochs for about TIMED_SAMPLES samples to be timed, at least MIN_TIMED
  epochs: one epoch of a thousand samples lasts a fraction of a second, and alone it
  varied nearly threefold from run to run on a shared 2-core machine.
- the peak RSS of the process: over the whole run (loading, fit, test, pictures, MLflow)
  and at the end of fit.

Each point runs in a fresh process (`run.isolated`), so its peak is its own: TensorFlow,
the model, the input pipeline and whatever of the data the process holds. It is read
from VmHWM in /proc/self/status, not getrusage's ru_maxrss: a process started by exec
inherits in ru_maxrss the high-water mark of the process it was forked from, and the
benchmark runner has TensorFlow loaded. The data are generated beforehand into a
temporary folder (not timed) and deleted after their point.

The goals, reported and not asserted: samples/s flat within 20% across sizes (fastest
over slowest <= 1.2), and the peak RSS not growing with the data: `cache: none` keeps
none of it, so the growth from the smallest size to the largest should stay within a
budget: a tenth of what the largest data set takes decoded (float32), room for what is
kept per sample (file names, split indices), and at least NOISE_MIB, the run-to-run spread.

    TFDL_BENCH_SIZES=1000,3000 python -m benchmarks.run scaling   # other sizes, e.g. quick
"""

import math
import os
import re
import shutil
import tempfile
from pathlib import Path

SIZES = (1000, 10_000, 100_000)
FEATURES = 20  # numeric columns of the generated CSV
TIMED_SAMPLES, MIN_TIMED = 50_000, 3  # per point, over the epochs after the first
NOISE_MIB = 16  # peak RSS of one job varies by a few MiB from one run to the next


def sizes() -> list[int]:
    """The sample counts to measure: TFDL_BENCH_SIZES (comma-separated) or SIZES."""
    raw = os.environ.get("TFDL_BENCH_SIZES", "")
    return sorted(int(s) for s in raw.split(",") if s.strip()) or list(SIZES)


def epochs(size: int) -> int:
    """The first epoch, then enough to time about TIMED_SAMPLES samples."""
    return 1 + max(MIN_TIMED, math.ceil(TIMED_SAMPLES / size))


def _peak() -> float:
    """This process's peak RSS so far, MiB."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


# ------------------------------------------------------------------------------- the data


def make_images(folder: Path, n: int) -> None:
    from tfdl.data.shapes import make_shapes

    make_shapes(folder, per_class=n // 3, size=32, seed=0)


def make_csv(file: Path, n: int) -> None:
    """n rows of FEATURES standard normal columns and a binary `label` a noisy linear rule
    of them sets, so the net has something to learn."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, FEATURES)).astype("float32")
    score = x @ rng.standard_normal(FEATURES) + 0.5 * rng.standard_normal(n)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(FEATURES)])
    frame["label"] = (score > 0).astype(int)
    frame.to_csv(file, index=False, float_format="%.6g")


def _rest(size: int) -> dict:
    return {
        "train": {"epochs": epochs(size), "batch_size": 64, "verbose": 0},
        # No model logged, so the run's end does not outweigh its epochs (the pictures
        # cannot be switched off; they are drawn after fit, outside the timed epochs).
        "tracking": {"experiment": "bench-scaling", "log_model": False},
    }


def image_pipeline(folder, size: int) -> dict:
    data = {
        "source": "image_folder",
        "path": str(folder),
        "image_size": [32, 32],
        "cache": "none",
        "val_fraction": 0.1,
        "test_fraction": 0.1,
    }
    model = {"arch": "cnn2d", "filters": [16, 32], "batch_norm": False, "dense_units": [32]}
    return {"data": data, "model": model, **_rest(size)}


def csv_pipeline(file, size: int) -> dict:
    data = {
        "source": "csv",
        "path": str(file),
        "target": "label",
        "streaming": "on",
        "cache": "none",
        "val_fraction": 0.1,
        "test_fraction": 0.1,
    }
    return {"data": data, "model": {"arch": "deep_mlp", "units": [64, 64]}, **_rest(size)}


# source: (its file or folder name, how to generate it, its pipeline)
SOURCES = {
    "image_folder": ("shapes", make_images, image_pipeline),
    "csv": ("table.csv", make_csv, csv_pipeline),
}

# ------------------------------------------------------------------- one point, in a child


def measure(source: str, path: str, size: str) -> dict:
    """One point, run by `benchmarks.run --child scaling SOURCE PATH SIZE`."""
    import keras

    import tfdl
    from benchmarks.clock import EpochClock

    p = tfdl.prepare(SOURCES[source][2](path, int(size)))
    clock, fit_peak = EpochClock(), []
    # The peak as fit ends, before the test split, the pictures and MLflow's logging.
    at_end = keras.callbacks.LambdaCallback(on_train_end=lambda logs: fit_peak.append(_peak()))
    tfdl.train(p, callbacks=[clock, at_end])
    info = p.splits.info
    n_train, n_all = info["n_train"], info["n_train"] + info["n_val"] + info["n_test"]
    return {
        "source": source,
        "size": int(size),
        "n_train": n_train,
        "epochs": len(clock.train),
        "samples_s": n_train / clock.steady("train"),
        "first_epoch_samples_s": n_train / clock.train[0],
        "peak_rss_mib": _peak(),
        "fit_peak_rss_mib": fit_peak[0],
        # What holding every sample decoded (float32) would take: the scale for RSS growth.
        "data_mib": n_all * math.prod(p.spec.input_shape) * 4 / 2**20,
    }


# ---------------------------------------------------------------------- the whole section


def summary(points: list[dict]) -> dict:
    """Per source: the spread of samples/s over the sizes, and the peak RSS growth from
    the smallest size to the largest against its budget (see the module docstring)."""
    out = {}
    for source in dict.fromkeys(p["source"] for p in points):
        mine = sorted((p for p in points if p["source"] == source), key=lambda p: p["size"])
        rates = [p["samples_s"] for p in mine]
        growth = mine[-1]["peak_rss_mib"] - mine[0]["peak_rss_mib"]
        budget = max(NOISE_MIB, 0.1 * mine[-1]["data_mib"])
        out[source] = {
            "sizes": [mine[0]["size"], mine[-1]["size"]],
            "flatness": max(rates) / min(rates),
            "rss_growth_mib": growth,
            "data_mib": mine[-1]["data_mib"],
            "rss_budget_mib": budget,
            "rss_growth/budget": growth / budget,
        }
    return out


def run(isolated) -> dict:
    """Every source at every size, each point in a fresh process (`isolated`); the data
    of a point are generated just before it and removed after it."""
    points = []
    with tempfile.TemporaryDirectory(prefix="tfdl-bench-scaling-") as tmp:
        for source, (name, make, _) in SOURCES.items():
            for n in sizes():
                path = Path(tmp) / f"{n}-{name}"
                make(path, n)
                points.append(isolated("scaling", source, str(path), str(n)))
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
    return {"points": points, "summary": summary(points)}
