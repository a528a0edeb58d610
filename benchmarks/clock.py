"""Timing shared by the benchmarks: an epoch clock for model.fit and robust summaries."""

import statistics
import time

import keras


class EpochClock(keras.callbacks.Callback):
    """Per-epoch wall times, taken last in the callback list.

    `train` is the training loop alone (epoch start to the start of validation), `full` the
    whole epoch, every callback's end-of-epoch work included (epoch start to the next start,
    so the last epoch has none).
    """

    def __init__(self):
        super().__init__()
        self.train, self.full, self._start, self._in_epoch = [], [], None, False

    def on_epoch_begin(self, epoch, logs=None):
        now = time.perf_counter()
        if self._start is not None:
            self.full.append(now - self._start)
        self._start, self._in_epoch = now, True

    def on_test_begin(self, logs=None):
        if self._in_epoch:  # fit's own validation, not a separate evaluate
            self.train.append(time.perf_counter() - self._start)
            self._in_epoch = False

    def on_epoch_end(self, epoch, logs=None):
        if self._in_epoch:  # no validation data
            self.train.append(time.perf_counter() - self._start)
            self._in_epoch = False

    def on_train_end(self, logs=None):
        self.ended = time.perf_counter()  # the last epoch's `full` would include fit's ending

    def steady(self, which="train"):
        """Median epoch time after the first (which traces and compiles)."""
        times = getattr(self, which)[1:]
        return statistics.median(times)

    def mean(self, which="full"):
        """Mean epoch time after the first: what a cost paid every few epochs (a write or
        backup at most every 0.25 s) adds per epoch, which a median can miss or overstate."""
        return statistics.mean(getattr(self, which)[1:])


def median(values):
    return statistics.median(values)


def timed(fn, *args, **kwargs):
    """(result, seconds) of one call."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start
