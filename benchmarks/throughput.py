"""Training throughput three ways on the same model and data (samples/s, steady state).

a. tfdl: the pipeline as `tfdl train` runs it (tf.data, the callback stack, MLflow on);
   and the same without MLflow, for the tracking overhead.
b. naive: NumPy arrays into `model.fit`, compiled with Keras's default settings.
c. limit: the same train step over batches already in memory, a whole epoch per call of
   one `tf.function` (no Python and no input pipeline per step).
"""

import math
import tempfile
import time
from pathlib import Path

import keras
import tensorflow as tf

from benchmarks.clock import EpochClock, median
from tfdl import tracking
from tfdl.compile import make_metrics, make_optimizer, prepare
from tfdl.config import load_pipeline
from tfdl.data.pipeline import labels_for
from tfdl.models import build_model
from tfdl.train import build, fit, train

# The course's models the issue names, each in its shipped pipeline.
MODELS = {
    "deep_mlp": "pipelines/mlp.yaml",
    "cnn2d": "pipelines/cnn2d.yaml",
    "gru": "pipelines/gru.yaml",
    "transformer_encoder": "pipelines/transformer_encoder.yaml",
    "char_lm": "pipelines/char_lm.yaml",
}


def setup(pipeline, epochs, overrides=()):
    cfg = load_pipeline(pipeline, [f"train.epochs={epochs}", "train.verbose=0", *overrides])
    return prepare(cfg)


def _arrays(splits, x, y):
    x = x.astype("float32") if splits.spec.input_dtype == "float32" else x
    return x, labels_for(y, splits.spec.task)


class TimedLogging:
    """Seconds the training loop spends in MLflow's per-epoch logging: handing an epoch's
    metrics over and waiting for them to be stored (before a backup, at the end of fit)."""

    def __init__(self):
        self.seconds, self.epochs = 0.0, 0

    def _timed(self, fn, *args):
        start = time.perf_counter()
        fn(*args)
        self.seconds += time.perf_counter() - start

    def __enter__(self):
        self.make = tracking.epoch_logger

        def epoch_logger(run_id):
            log = self.make(run_id)

            def timed(logs, epoch):
                self.epochs += 1
                self._timed(log, logs, epoch)

            timed.wait = lambda: self._timed(log.wait)
            return timed

        tracking.epoch_logger = epoch_logger
        return self

    def __exit__(self, *exc):
        tracking.epoch_logger = self.make

    @property
    def per_epoch(self):
        return self.seconds / self.epochs


def tfdl_way(prepared):
    """The epoch clock of a tracked run, its MLflow logging seconds per epoch, and the
    seconds from the end of fit to the end of the run (test metrics, model, plots)."""
    clock = EpochClock()
    with TimedLogging() as logging:
        train(prepared[0], prepared=prepared, callbacks=[clock])
    return clock, logging.per_epoch, time.perf_counter() - clock.ended


def untracked_way(prepared):
    """The same model, data and callback stack (backups included), with no MLflow logging."""
    cfg, splits = prepared
    model = build(cfg, splits.spec, math.ceil(len(splits.y_train) / cfg.train.batch_size))
    clock = EpochClock()
    with tempfile.TemporaryDirectory() as run_dir:
        fit(model, cfg, splits, callbacks=[clock], run_dir=Path(run_dir))
    return clock


def naive_way(prepared):
    """What a user writes by hand: the same model and optimizer, default compile settings."""
    cfg, splits = prepared
    keras.utils.set_random_seed(cfg.train.seed)
    model = build_model(cfg.model, splits.spec)
    model.compile(
        optimizer=make_optimizer(cfg.train.optimizer),
        loss=cfg.train.loss,
        metrics=make_metrics(cfg.train.metrics, splits.spec.task, cfg.train.loss),
    )
    clock = EpochClock()
    model.fit(
        *_arrays(splits, splits.x_train, splits.y_train),
        batch_size=cfg.train.batch_size,
        epochs=cfg.train.epochs,
        validation_data=_arrays(splits, splits.x_val, splits.y_val),
        callbacks=[clock],
        verbose=0,
    )
    return clock


def limit_way(prepared):
    """Seconds per epoch of tfdl's compiled train step with no input pipeline at all."""
    cfg, splits = prepared
    bs = cfg.train.batch_size
    x, y = _arrays(splits, splits.x_train, splits.y_train)
    n = len(y) // bs
    model = build(cfg, splits.spec, math.ceil(len(y) / bs))
    model.optimizer.build(model.trainable_variables)
    xs = tf.constant(x[: n * bs].reshape(n, bs, *x.shape[1:]))
    ys = tf.constant(y[: n * bs].reshape(n, bs, *y.shape[1:]))

    @tf.function(jit_compile=bool(model.jit_compile))
    def epoch():
        for i in tf.range(n):
            model.train_step((xs[i], ys[i]))

    times = []
    for _ in range(cfg.train.epochs):
        start = tf.timestamp()
        epoch()
        times.append(float(tf.timestamp() - start))
    return median(times[1:]), n * bs


def measure(name, pipeline, *, epochs=4, repeats=3, overrides=()):
    """Median samples/s of each way and the ratios, taken repeat by repeat side by side;
    the per-epoch cost of tracking, and its fixed cost at the end of a run."""
    prepared = setup(pipeline, epochs, overrides)
    n = len(prepared[1].y_train)
    rows = []
    for _ in range(repeats):
        tracked, logging, end_cost = tfdl_way(prepared)
        untracked = untracked_way(prepared)
        naive = naive_way(prepared)
        seconds, samples = limit_way(prepared)
        rows.append(
            {
                "tfdl": n / tracked.steady(),
                "naive": n / naive.steady(),
                "limit": samples / seconds,
                "epoch_tracked": tracked.steady("full"),
                "epoch_untracked": untracked.steady("full"),
                "logging_s_per_epoch": logging,
                "end_of_run_s": end_cost,
            }
        )
        keras.backend.clear_session()
    result = {"model": name, "pipeline": pipeline, "repeats": repeats, "train_samples": n}
    result |= {k: median([r[k] for r in rows]) for k in rows[0]}
    result["tfdl/naive"] = median([r["tfdl"] / r["naive"] for r in rows])
    result["tfdl/limit"] = median([r["tfdl"] / r["limit"] for r in rows])
    # Measured in the loop: the difference of two whole epochs is lost in their noise.
    result["tracking_overhead"] = median(
        [r["logging_s_per_epoch"] / r["epoch_untracked"] for r in rows]
    )
    result["epoch_difference"] = median(
        [r["epoch_tracked"] / r["epoch_untracked"] - 1 for r in rows]
    )
    return result


if __name__ == "__main__":
    import sys

    for name in sys.argv[1:] or MODELS:
        print(measure(name, MODELS[name]))
