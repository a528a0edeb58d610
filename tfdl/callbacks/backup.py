"""Epoch backups that an interrupt cannot tear in half."""

import contextlib
import signal
import threading

import keras

DEFERRED = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT/SIGTERM until the block ends, then raise KeyboardInterrupt.

    Python-level handlers only record the signal meanwhile; masking at the OS level
    instead would tangle with TensorFlow's threads, which inherit or bypass the mask.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = {
        s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in DEFERRED
    }
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if received:
        raise KeyboardInterrupt


class Backup(keras.callbacks.BackupAndRestore):
    """keras.callbacks.BackupAndRestore, with each epoch's backup written whole.

    The backup is two files (weights, then the epoch number); Ctrl-C or SIGTERM between
    the two would leave weights of epoch k labelled with an older epoch, and a resume
    would count epochs wrongly. (kill -9 cannot be deferred: see double_checkpoint.)
    """

    def __init__(self, backup_dir):
        super().__init__(backup_dir, double_checkpoint=True)

    def on_epoch_end(self, epoch, logs=None):
        with signals_deferred():
            super().on_epoch_end(epoch, logs)
