"""Tuning overhead: a search's wall time per trial against plain build + fit of its trials.

The search's one-off ending (results table, plot, best model into MLflow) is timed apart,
as the end of a training run is: it does not grow with the number of trials.
"""

import contextlib
import gc
import math
import time

import keras

from benchmarks.clock import median
from tfdl import tune
from tfdl.compile import resolve
from tfdl.config import apply_overrides, load_tuning, validate
from tfdl.data.pipeline import make_datasets
from tfdl.data.split import load_splits
from tfdl.train import build
from tfdl.tune import trial_overrides

JOB = "tuning/mlp_random.yaml"


def plain(base, trials, splits, *, frozen=False):
    """Seconds to build and fit each trial's model with nothing around it; `frozen`: with
    the heap frozen as the search freezes it, so only the tuning machinery differs."""
    if frozen:
        gc.freeze()
    start = time.perf_counter()
    for values in trials:
        cfg = resolve(validate(apply_overrides(base, trial_overrides(values))), splits.spec)
        keras.backend.clear_session()  # as Keras Tuner does before each build
        model = build(cfg, splits.spec, math.ceil(len(splits.y_train) / cfg.train.batch_size))
        train_ds, val_ds, _ = make_datasets(splits, batch_size=cfg.train.batch_size, seed=0)
        model.fit(train_ds, validation_data=val_ds, epochs=cfg.train.epochs, verbose=0)
    seconds = time.perf_counter() - start
    if frozen:
        gc.unfreeze()
    return seconds


@contextlib.contextmanager
def timed_ending(seconds: list):
    """Appends the seconds the search spends logging its result once its trials are done."""
    log_result = tune.log_result

    def timed(*args, **kwargs):
        start = time.perf_counter()
        log_result(*args, **kwargs)
        seconds.append(time.perf_counter() - start)

    tune.log_result = timed
    try:
        yield
    finally:
        tune.log_result = log_result


def measure(*, trials=8, epochs=2, repeats=3):
    job, base = load_tuning(JOB, [f"max_trials={trials}", f"epochs={epochs}"])
    splits = load_splits(validate(base).data, validate(base).train.seed)
    extra, machinery, ending = [], [], []
    for r in range(repeats):
        start = time.perf_counter()
        with timed_ending(ending):
            result = tune.search(job, base, name=f"bench-tuning-{r}", overwrite=True)
        searched = time.perf_counter() - start - ending[-1]
        values = [{path: row[path] for path in job.space} for row in result.trials]
        extra.append((searched - plain(base, values, splits)) / len(values))
        machinery.append((searched - plain(base, values, splits, frozen=True)) / len(values))
    return {
        "job": JOB,
        "trials": trials,
        "epochs": epochs,
        "extra_s_per_trial": median(extra),
        "machinery_s_per_trial": median(machinery),
        "end_of_search_s": median(ending),
    }


if __name__ == "__main__":
    print(measure())
