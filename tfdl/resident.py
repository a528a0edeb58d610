"""A training split held whole in memory, each batch gathered inside the compiled call.

Reading a batch from a tf.data iterator costs about 100 us a step on a CPU, a quarter of a
small MLP's whole step; slicing it from a tensor in memory about 15 (measured:
benchmarks/results/analysis.md). So for a split already in memory (`train.input: auto`),
model.fit runs the train function made here instead of Keras's: each call takes up to
`steps_per_execution` steps, each gathering its batch from the split by a slice of the
epoch's permutation. The permutation is drawn at each epoch's start from (seed, epoch),
so a resumed run's epochs see the rows in the order an uninterrupted run's would.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import tensorflow as tf

from tfdl.data.pipeline import model_arrays

MAX_BYTES = 2**30  # larger splits stream through tf.data: a GPU's memory is smaller than the host's


def nbytes(x) -> int:
    return sum(a.nbytes for a in x.values()) if isinstance(x, dict) else x.nbytes


def resident_split(p) -> Resident | None:
    """The training split of prepared pipeline `p` held resident, or None where fit reads it
    through tf.data: by choice (`train.input: tf_data`), streamed from files, larger than
    MAX_BYTES, or under a distribution (the strategy splits the batches tf.data gives)."""
    t, s = p.cfg.train, p.splits
    if t.input != "auto" or s.spec.stream or t.distribution != "none":
        return None
    x, y = model_arrays(s, s.x_train, s.y_train)
    if nbytes(x) + y.nbytes > MAX_BYTES:
        return None
    num_classes = s.spec.num_classes if p.one_hot else None
    return Resident(x, y, batch_size=t.batch_size, seed=t.seed, num_classes=num_classes)


class Resident(keras.callbacks.Callback):
    """The split (x, y) as tensors on the default device (a GPU's when there is one), and
    the callback that draws each epoch's order; `training(model)` installs its train
    function for one fit."""

    def __init__(self, x, y: np.ndarray, *, batch_size: int, seed: int, num_classes=None):
        super().__init__()
        # tf.identity copies the host's array to the default device once, not every call.
        self.x = tf.nest.map_structure(lambda a: tf.identity(tf.convert_to_tensor(a)), x)
        self.y = tf.identity(tf.convert_to_tensor(y))
        self.rows, self.batch_size, self.seed = len(y), batch_size, seed
        self.num_classes = num_classes
        self.whole, self.tail = divmod(self.rows, batch_size)  # whole batches, a partial one's rows
        self.steps = self.whole + (self.tail > 0)
        self.order = tf.Variable(tf.range(self.rows), trainable=False)
        self.step = tf.Variable(0, trainable=False)  # the epoch's next batch

    def on_epoch_begin(self, epoch, logs=None):
        seed = tf.constant([self.seed, epoch], dtype=tf.int64)
        self.order.assign(tf.random.experimental.stateless_shuffle(tf.range(self.rows), seed))
        self.step.assign(0)

    def batch(self, i, size: int):
        """Batch `i` of the epoch, `size` rows (a number fixed when traced, so the shapes
        are static as XLA needs them), as tf.data would give it: labels one-hot if asked."""
        rows = tf.slice(self.order, [i * self.batch_size], [size])
        x = tf.nest.map_structure(lambda a: tf.gather(a, rows), self.x)
        y = tf.gather(self.y, rows)
        return x, (tf.one_hot(y, self.num_classes) if self.num_classes else y)

    def stand_in(self) -> tf.data.Dataset:
        """What fit is given as its data: one batch, repeated. Keras reads it once to build
        the compiled loss and metrics; the train function never reads it."""
        first = self.batch(0, min(self.batch_size, self.rows))
        return tf.data.Dataset.from_tensors(first).repeat()

    def train_function(self, model):
        """Keras's train function with its batches gathered here: the next
        steps_per_execution steps of the epoch a call, never past its end, then the
        metrics as Keras's returns them. One compiled graph for the whole call (XLA when
        the model has it, as the in-memory limit of benchmarks/throughput.py runs)."""
        per_call = model.steps_per_execution

        def whole_batch(i):
            model.train_step(self.batch(i, self.batch_size))
            return (i + 1,)

        def last_batch():  # the partial one, which ends the epoch
            model.train_step(self.batch(self.whole, self.tail))
            return tf.constant(True)

        # Written in TF's own loop and cond, as Keras's train function is: autograph would
        # convert every function the step calls, 0.2-0.3 s of the first epoch.
        @tf.function(jit_compile=bool(model.jit_compile), autograph=False)
        def steps():
            first = self.step.read_value()
            end = tf.minimum(first + per_call, self.steps)
            if self.whole:  # (Python ifs: each part traced only where the split has it)
                last = tf.minimum(end, self.whole)
                tf.while_loop(lambda i: i < last, whole_batch, (first,))
            if self.tail:
                tf.cond(end == self.steps, last_batch, lambda: tf.constant(False))
            self.step.assign(end)
            return model.get_metrics_result()

        return lambda iterator: steps()

    @contextlib.contextmanager
    def training(self, model):
        """Keras's fit calls model.train_function when set; it is unset afterwards, so a
        later fit on other data makes its own."""
        model.train_function = self.train_function(model)
        # fit reads the metrics again eagerly after each epoch's training (a few eager ops
        # per metric, measured 560 us); as one compiled call 290 us. In a graph (the train
        # function's own steps) the method is traced as it is.
        compiled = tf.function(model.get_metrics_result)
        eager = model.get_metrics_result
        model.get_metrics_result = lambda: compiled() if tf.executing_eagerly() else eager()
        try:
            yield
        finally:
            model.train_function = None
            del model.get_metrics_result
