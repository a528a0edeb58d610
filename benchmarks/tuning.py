"""Tuning overhead: a search's wall time per trial against plain build + fit of its trials."""

import math
import time

import keras

from benchmarks.clock import median
from tfdl.compile import resolve
from tfdl.config import apply_overrides, load_tuning, validate
from tfdl.data.pipeline import make_datasets
from tfdl.data.split import load_splits
from tfdl.train import build
from tfdl.tune import search, trial_overrides

JOB = "tuning/mlp_random.yaml"


def plain(base, trials, splits):
    """Seconds to build and fit each trial's model with nothing around it."""
    start = time.perf_counter()
    for values in trials:
        cfg = resolve(validate(apply_overrides(base, trial_overrides(values))), splits.spec)
        keras.backend.clear_session()  # as Keras Tuner does before each build
        model = build(cfg, splits.spec, math.ceil(len(splits.y_train) / cfg.train.batch_size))
        train_ds, val_ds, _ = make_datasets(splits, batch_size=cfg.train.batch_size, seed=0)
        model.fit(train_ds, validation_data=val_ds, epochs=cfg.train.epochs, verbose=0)
    return time.perf_counter() - start


def measure(*, trials=8, epochs=2, repeats=3):
    job, base = load_tuning(JOB, [f"max_trials={trials}", f"epochs={epochs}"])
    splits = load_splits(validate(base).data, validate(base).train.seed)
    extra = []
    for r in range(repeats):
        start = time.perf_counter()
        result = search(job, base, name=f"bench-tuning-{r}", overwrite=True)
        searched = time.perf_counter() - start
        values = [{path: row[path] for path in job.space} for row in result.trials]
        extra.append((searched - plain(base, values, splits)) / len(values))
    return {"job": JOB, "trials": trials, "epochs": epochs, "extra_s_per_trial": median(extra)}


if __name__ == "__main__":
    print(measure())
