"""Tuning overhead: a search's wall time per trial against plain build + fit of its trials.

The search's one-off ending (results table, plot, best model into MLflow) is timed apart,
as the end of a training run is: it does not grow with the number of trials.
"""

import contextlib
import gc
import time

import keras

from benchmarks.clock import median
from tfdl import search as search_module
from tfdl.config import apply_overrides, as_overrides, load_tuning, validate
from tfdl.prepared import Prepared, prepare
from tfdl.training import build

JOB = "tuning/mlp_random.yaml"


def plain(base, trials, prepared: Prepared, *, frozen=False):
    """Seconds to build and fit each trial's model with nothing around it (on the data of
    `prepared`, loaded beforehand); `frozen`: with the heap frozen as the search freezes it,
    so only the tuning machinery differs."""
    if frozen:
        gc.freeze()
    start = time.perf_counter()
    for values in trials:
        p = prepared.with_config(validate(apply_overrides(base, as_overrides(values))))
        keras.backend.clear_session()  # as Keras Tuner does before each build
        model = build(p)
        model.fit(
            p.dataset("train"),
            validation_data=p.dataset("val"),
            epochs=p.cfg.train.epochs,
            verbose=0,
        )
    seconds = time.perf_counter() - start
    if frozen:
        gc.unfreeze()
    return seconds


@contextlib.contextmanager
def timed_ending(seconds: list):
    """Appends the seconds the search spends logging its result once its trials are done."""
    log_result = search_module.log_result

    def timed(*args, **kwargs):
        start = time.perf_counter()
        log_result(*args, **kwargs)
        seconds.append(time.perf_counter() - start)

    search_module.log_result = timed
    try:
        yield
    finally:
        search_module.log_result = log_result


def measure(*, trials=8, epochs=2, repeats=3):
    job, base = load_tuning(JOB, [f"max_trials={trials}", f"epochs={epochs}"])
    prepared = prepare(validate(base))  # the trials' data, for the plain loop
    extra, machinery, ending = [], [], []
    for r in range(repeats):
        start = time.perf_counter()
        with timed_ending(ending):
            # Not given `prepared`: loading the data stays part of the search's time.
            result = search_module.search(job, base, name=f"bench-tuning-{r}", overwrite=True)
        searched = time.perf_counter() - start - ending[-1]
        values = [{path: row[path] for path in job.space} for row in result.trials]
        extra.append((searched - plain(base, values, prepared)) / len(values))
        machinery.append((searched - plain(base, values, prepared, frozen=True)) / len(values))
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
