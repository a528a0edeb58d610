"""Record each epoch's wall time in the epoch logs (and so in History and MLflow)."""

import time

import keras


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_time_s`: seconds from the epoch's start to its end, validation included.

    Runs that differ in batch size or optimizer then compare by time as well as by loss;
    the run's own duration also counts loading data, pictures and logging the model.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_time_s"] = time.perf_counter() - self.start
