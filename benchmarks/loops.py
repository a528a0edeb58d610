"""The lecture's loop (`train.loop: custom`) against model.fit on the same model and data.

Both untracked, with the same callback stack (backups included), alternated repeat by
repeat; samples/s of the training loop in the steady state (after the first epoch).
"""

import tempfile
from pathlib import Path

import keras

from benchmarks.clock import EpochClock, median
from benchmarks.throughput import EPOCHS, setup
from tfdl.prepared import Prepared
from tfdl.training import build, fit


def samples_per_s(p: Prepared) -> float:
    model = build(p)
    clock = EpochClock()
    with tempfile.TemporaryDirectory() as run_dir:
        fit(model, p, callbacks=[clock], run_dir=Path(run_dir))
    keras.backend.clear_session()
    return len(p.splits.y_train) / clock.steady()


def measure(name, pipeline, *, repeats=3):
    by_fit = setup(pipeline, EPOCHS.get(name, 4))
    custom = by_fit.with_config(by_fit.cfg.model_copy(deep=True))
    custom.cfg.train.loop = "custom"
    rows = [(samples_per_s(by_fit), samples_per_s(custom)) for _ in range(repeats)]
    return {
        "model": name,
        "pipeline": pipeline,
        "repeats": repeats,
        "fit": median([f for f, _ in rows]),
        "custom": median([c for _, c in rows]),
        "custom/fit": median([c / f for f, c in rows]),
    }
