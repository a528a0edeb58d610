"""Training throughput three ways on the same model and data (samples/s, steady state).

a. tfdl: the pipeline as `tfdl train` runs it (the split held in memory, the callback
   stack, MLflow on); and the same without MLflow, for the tracking overhead, and without
   MLflow reading the split through tf.data (`train.input: tf_data`).
b. naive: NumPy arrays into `model.fit`, compiled with Keras's default settings.
c. limit: the same train step over batches already in memory, a whole epoch per call of
   one `tf.function` (no Python and no input pipeline per step); its epochs are run
   between tfdl's epochs (LimitProbe), so each pair is timed moments apart.
And, to tell apart what separates a from c: the limit's loop reading each batch from tfdl's
tf.data pipeline instead of memory ("fed"): the cost of having an input pipeline at all.
"""

import tempfile
import time
from pathlib import Path

import keras
import tensorflow as tf

from benchmarks.clock import EpochClock, median
from tfdl import tracking
from tfdl.compile import make_metrics, make_optimizer
from tfdl.config import load_pipeline
from tfdl.data.pipeline import labels_for
from tfdl.models import build_model
from tfdl.prepared import Prepared, prepare
from tfdl.training import build, fit, train

# The course's models the issue names, each in its shipped pipeline.
MODELS = {
    "deep_mlp": "pipelines/mlp.yaml",
    "cnn2d": "pipelines/cnn2d.yaml",
    "gru": "pipelines/gru.yaml",
    "transformer_encoder": "pipelines/transformer_encoder.yaml",
    "char_lm": "pipelines/char_lm.yaml",
}
# Epochs per measurement: the first traces and compiles, the median of the rest is quoted.
# Epochs of tens of milliseconds need more of them to outlast the machine's noise, and to
# hold several beats on which metrics are written and backups taken; epochs of a second
# more than three, as the tracking overhead compares means of a few epochs.
EPOCHS = {"deep_mlp": 30, "cnn2d": 16, "gru": 8, "transformer_encoder": 8, "char_lm": 6}


def setup(pipeline, epochs, overrides=()) -> Prepared:
    cfg = load_pipeline(pipeline, [f"train.epochs={epochs}", "train.verbose=0", *overrides])
    return prepare(cfg)


def _arrays(p: Prepared, x, y):
    x = x.astype("float32") if p.spec.input_dtype == "float32" else x
    return x, labels_for(y, p.spec.task)


class TimedLogging:
    """Seconds the training loop spends in MLflow's per-epoch logging: handing an epoch's
    metrics over and waiting for them to be stored (before a backup, at the end of fit);
    and the CPU seconds the writer thread spends storing them, which on a machine whose
    cores the training fills delay it by at most as much. Each cost is booked to the
    epoch it falls in, as EpochClock's whole epochs count them."""

    def __init__(self):
        self.epochs, self.epoch = 0, 0
        self.waited: list[tuple[int, float]] = []  # (epoch, seconds the loop waited)
        self.writer_cpu: list[tuple[int, float]] = []  # (epoch, CPU seconds of a write)

    def _timed(self, fn, *args):
        start = time.perf_counter()
        fn(*args)
        self.waited.append((self.epoch, time.perf_counter() - start))

    def __enter__(self):
        self.make = tracking.epoch_logger

        def epoch_logger(run_id):
            log = self.make(run_id)
            write = log._timed  # what the writer thread runs, write by write

            def counted(*args, metrics, **kwargs):
                start = time.thread_time()  # this thread's CPU, not the machine's clock
                try:
                    return write(*args, metrics=metrics, **kwargs)
                finally:
                    # Handed over at the end of the last epoch it carries, it runs during
                    # the next: with MLflow's steps counted from 1, that epoch's index.
                    epoch = max(m.step for m in metrics)
                    self.writer_cpu.append((epoch, time.thread_time() - start))

            log._timed = counted

            def timed(logs, epoch):
                self.epochs, self.epoch = self.epochs + 1, epoch
                self._timed(log, logs, epoch)

            timed.wait = lambda: self._timed(log.wait)
            return timed

        tracking.epoch_logger = epoch_logger
        return self

    def __exit__(self, *exc):
        tracking.epoch_logger = self.make

    def per_epoch(self, costs) -> float:
        """Mean seconds per epoch over the epochs EpochClock's whole epochs span: after the
        first, before the last (whose end is fit's final wait)."""
        middle = range(1, self.epochs - 1)
        return sum(s for e, s in costs if e in middle) / len(middle)


def tfdl_way(p: Prepared):
    """The epoch clock of a tracked run, its MLflow logging (TimedLogging), and the
    seconds from the end of fit to the end of the run (test metrics, model, plots)."""
    clock = EpochClock()
    with TimedLogging() as logging:
        train(p, callbacks=[clock])
    return clock, logging, time.perf_counter() - clock.ended


def untracked_way(p: Prepared, input_="auto"):
    """The same model, data and callback stack (backups included), with no MLflow logging;
    `input_`: how fit reads the training split (`train.input`)."""
    if input_ != p.cfg.train.input:
        cfg = p.cfg.model_copy(deep=True)
        cfg.train.input = input_
        p = p.with_config(cfg)
    model = build(p)
    clock = EpochClock()
    with tempfile.TemporaryDirectory() as run_dir:
        fit(model, p, callbacks=[clock], run_dir=Path(run_dir))
    return clock


def naive_way(p: Prepared):
    """What a user writes by hand: the same model and optimizer, default compile settings."""
    cfg, splits = p.cfg, p.splits
    keras.utils.set_random_seed(cfg.train.seed)
    model = build_model(cfg.model, p.spec)
    model.compile(
        optimizer=make_optimizer(cfg.train.optimizer),
        loss=cfg.train.loss,
        metrics=make_metrics(cfg.train.metrics, p.spec.task, p.one_hot),
    )
    clock = EpochClock()
    model.fit(
        *_arrays(p, splits.x_train, splits.y_train),
        batch_size=cfg.train.batch_size,
        epochs=cfg.train.epochs,
        validation_data=_arrays(p, splits.x_val, splits.y_val),
        callbacks=[clock],
        verbose=0,
    )
    return clock


def limit_epoch(p: Prepared, fed=False):
    """(epoch, samples): `epoch()` runs one epoch of tfdl's compiled train step in one
    `tf.function` looping over the epoch's batches, on a model of its own: already in
    memory as tensors, or with `fed`, read from tfdl's tf.data pipeline (the training
    stream model.fit gets with `train.input: tf_data`)."""
    bs = p.cfg.train.batch_size
    total = len(p.splits.y_train)
    model = build(p)
    model.optimizer.build(model.trainable_variables)
    if fed:  # every batch of the epoch, the last partial one too (its batch dimension: None)
        n, samples = p.steps_per_epoch, total
        stream = iter(p.dataset("train", repeat=True))
        batch = lambda i: next(stream)  # noqa: E731
    else:  # whole batches only (not p.steps_per_epoch: no partial last one), already tensors
        x, y = _arrays(p, p.splits.x_train, p.splits.y_train)
        n = total // bs
        samples = n * bs
        xs = tf.constant(x[: n * bs].reshape(n, bs, *x.shape[1:]))
        ys = tf.constant(y[: n * bs].reshape(n, bs, *y.shape[1:]))
        batch = lambda i: (xs[i], ys[i])  # noqa: E731

    jit = bool(model.jit_compile)
    # XLA cannot compile an iterator's ops: fed, the loop stays a graph calling an XLA step.
    step = tf.function(model.train_step, jit_compile=True) if fed and jit else model.train_step

    @tf.function(jit_compile=jit and not fed)
    def epoch():
        for i in tf.range(n):
            step(batch(i))

    return epoch, samples


def fed_way(p: Prepared):
    """Seconds per epoch (the median after the first), and samples in it, of the limit's
    loop reading tfdl's tf.data stream (limit_epoch, fed)."""
    epoch, samples = limit_epoch(p, fed=True)
    times = []
    for _ in range(p.cfg.train.epochs):
        start = tf.timestamp()
        epoch()
        times.append(float(tf.timestamp() - start))
    return median(times[1:]), samples


class LimitProbe(keras.callbacks.Callback):
    """One epoch of the limit (limit_epoch) at the end of each epoch model.fit trains, each
    timed: a pair of epochs taken moments apart, so the ratio of the two is measured side
    by side at the epoch's scale, not seconds apart as whole ways are."""

    def __init__(self, p: Prepared):
        super().__init__()
        self.epoch, self.samples = limit_epoch(p)
        self.seconds = []

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        self.epoch()
        self.seconds.append(time.perf_counter() - start)


def paired_way(p: Prepared):
    """tfdl's training loop (untracked, no backup: the tracking overhead is measured apart)
    and the limit paired epoch by epoch: the median over epochs after the first of
    samples/s of the one over the other's, and the limit's median samples/s."""
    model = build(p)
    clock, probe = EpochClock(), LimitProbe(p)
    fit(model, p, callbacks=[clock, probe])
    n = len(p.splits.y_train)
    pairs = list(zip(clock.train, probe.seconds, strict=True))[1:]
    ratio = median([(n / trained) / (probe.samples / limit) for trained, limit in pairs])
    return ratio, probe.samples / median(probe.seconds[1:])


def measure(name, pipeline, *, epochs=None, repeats=3, overrides=()):
    """Median samples/s of each way and the ratios, taken repeat by repeat side by side;
    the per-epoch cost of tracking, and its fixed cost at the end of a run."""
    prepared = setup(pipeline, epochs or EPOCHS.get(name, 4), overrides)
    n = len(prepared.splits.y_train)
    rows = []
    for _ in range(repeats):
        tracked, logging, end_cost = tfdl_way(prepared)
        untracked = untracked_way(prepared)
        streamed = untracked_way(prepared, "tf_data")
        naive = naive_way(prepared)
        paired, limit = paired_way(prepared)
        fed_seconds, samples = fed_way(prepared)
        rows.append(
            {
                "tfdl": n / tracked.steady(),
                "naive": n / naive.steady(),
                "untracked": n / untracked.steady(),
                "tf_data": n / streamed.steady(),
                "limit": limit,
                "paired": paired,
                "fed": samples / fed_seconds,
                "epoch_tracked": tracked.mean("full"),
                "epoch_untracked": untracked.mean("full"),
                "logging_s_per_epoch": logging.per_epoch(logging.waited),
                "writer_cpu_s_per_epoch": logging.per_epoch(logging.writer_cpu),
                "end_of_run_s": end_cost,
            }
        )
        keras.backend.clear_session()
    result = {"model": name, "pipeline": pipeline, "repeats": repeats, "train_samples": n}
    result |= {k: median([r[k] for r in rows]) for k in rows[0]}
    result["tfdl/naive"] = median([r["tfdl"] / r["naive"] for r in rows])
    # The goal's measure: the training loop against the limit, paired epoch by epoch.
    result["tfdl/limit"] = median([r["paired"] for r in rows])
    result["fed/limit"] = median([r["fed"] / r["limit"] for r in rows])
    result["held/tf_data"] = median([r["untracked"] / r["tf_data"] for r in rows])
    # Whole epochs (training, validation, every callback) with MLflow against without,
    # paired repeat by repeat: on this machine they spread by +-10% from run to run, five
    # times the goal. The goal's measure is what tracking takes from an epoch, accounted:
    # the time the loop waits in the logging calls (`logging_in_loop`) and the CPU the
    # writer thread spends, which competes with the training for the cores and so delays
    # it by at most as much.
    result["epoch_wall_ratio"] = median(
        [r["epoch_tracked"] / r["epoch_untracked"] - 1 for r in rows]
    )
    result["logging_in_loop"] = median(
        [r["logging_s_per_epoch"] / r["epoch_untracked"] for r in rows]
    )
    result["tracking_overhead"] = median(
        [
            (r["logging_s_per_epoch"] + r["writer_cpu_s_per_epoch"]) / r["epoch_untracked"]
            for r in rows
        ]
    )
    return result


if __name__ == "__main__":
    import sys

    for name in sys.argv[1:] or MODELS:
        print(measure(name, MODELS[name]))
