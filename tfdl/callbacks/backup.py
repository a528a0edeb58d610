"""Epoch backups that an interrupt cannot tear in half."""

import json
import os
import shutil

import keras

from tfdl.signals import signals_deferred


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
