"""The measurement behind tfdl's speed defaults: steps_per_execution and XLA per model.

Each setting trains the same model with tfdl's tf.data pipeline and callbacks; the
steady-state samples/s of each is reported as a ratio to steps_per_execution 1, no XLA.
"""

import keras

from benchmarks.clock import EpochClock, median
from benchmarks.throughput import MODELS, setup
from tfdl.prepared import Prepared
from tfdl.training import build, fit

STEPS = (1, 32, 128)
JIT = (False, True)


def samples_per_second(prepared: Prepared, steps, jit):
    cfg = prepared.cfg.model_copy(deep=True)
    cfg.train.steps_per_execution, cfg.train.jit_compile = steps, jit
    p = prepared.with_config(cfg)
    model = build(p)
    clock = EpochClock()
    fit(model, p, callbacks=[clock])  # tfdl's data and callbacks, no MLflow
    keras.backend.clear_session()
    return len(p.splits.y_train) / clock.steady()


def sweep(name, *, epochs=3, repeats=2):
    prepared = setup(MODELS[name], epochs)
    grid = [(s, j) for j in JIT for s in STEPS]
    runs = {k: [] for k in grid}
    for _ in range(repeats):  # interleaved, so drift in the machine hits every setting alike
        for steps, jit in grid:
            runs[steps, jit].append(samples_per_second(prepared, steps, jit))
    base = median(runs[1, False])
    return {f"spe={s} xla={j}": median(v) / base for (s, j), v in runs.items()} | {
        "base samples/s": base
    }


if __name__ == "__main__":
    import sys

    for name in sys.argv[1:] or MODELS:
        print(name, {k: round(v, 2) for k, v in sweep(name).items()})
