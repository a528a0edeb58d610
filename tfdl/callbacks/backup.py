"""Epoch backups that an interrupt cannot tear in half, and the signal guard they use."""

import contextlib
import json
import os
import shutil
import signal
import threading

import keras

DEFERRED = {signal.SIGINT, signal.SIGTERM}
_holding = False  # an outer block already holds the signals: it raises at its own end


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT/SIGTERM until the block ends, then hand the first one to its handler
    (Python's for SIGINT raises KeyboardInterrupt; the CLI gives SIGTERM the same one).

    Python-level handlers only record the signal meanwhile; masking at the OS level
    instead would tangle with TensorFlow's threads, which inherit or bypass the mask.
    Signals without a Python handler (ignored, or left to the OS) are left alone.
    """
    global _holding
    if _holding or threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    handled = [s for s in DEFERRED if callable(signal.getsignal(s))]
    previous = {s: signal.signal(s, lambda signum, _: received.append(signum)) for s in handled}
    _holding = True
    try:
        yield
    finally:
        _holding = False
        for s, handler in previous.items():
            signal.signal(s, handler)
    if received:
        previous[received[0]](received[0], None)


class Backup(keras.callbacks.BackupAndRestore):
    """keras.callbacks.BackupAndRestore, with each epoch's backup written whole.

    The backup is two files (weights, then the epoch number); Ctrl-C or SIGTERM between
    the two would leave weights of epoch k labelled with an older epoch, and a resume
    would count epochs wrongly. (kill -9 cannot be deferred: see double_checkpoint.)
    """

    def __init__(self, backup_dir, before_commit=None):
        super().__init__(backup_dir, double_checkpoint=True)
        # Called between the weights and the epoch number: the metrics logger's wait, so a
        # backed-up epoch is always a logged one while the log is written meanwhile.
        self.before_commit = before_commit or (lambda: None)

    def on_epoch_end(self, epoch, logs=None):
        with signals_deferred():
            super().on_epoch_end(epoch, logs)

    def _save_model(self):
        # Keras's own steps, with before_commit before the epoch number is written.
        os.makedirs(self.backup_dir, exist_ok=True)
        for path, prev in (
            (self._weights_path, self._prev_weights_path),
            (self._training_metadata_path, self._prev_training_metadata_path),
        ):
            if os.path.exists(path):
                shutil.copy(path, prev)
        self.model.save_weights(filepath=self._weights_path, overwrite=True)
        self.before_commit()
        with open(self._training_metadata_path, "w") as f:
            json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen}, f)
