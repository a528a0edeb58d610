"""Epoch backups that an interrupt, a kill or a full disk cannot tear in half."""

import errno
import json
import math
import os
import shutil
import time
import zlib
from collections.abc import Callable

import keras

from tfdl import distribute, store
from tfdl.signals import signals_deferred

SPARE = 1 << 20  # bytes kept free beyond the backup's own size


class Backup(keras.callbacks.BackupAndRestore):
    """keras.callbacks.BackupAndRestore, with each backup written whole, taken at most
    every `every_s` seconds.

    The backup is two files (weights, then the epoch number); Ctrl-C or SIGTERM between
    the two would leave weights of epoch k labelled with an older epoch, and a resume
    would count epochs wrongly. kill -9 cannot be deferred, and a disk can fill up while
    the weights are written: so the epoch file records the weights file's size and CRC,
    and a resume trusts only a pair that matches, or else the previous pair
    (double_checkpoint). A disk without room for the backup is found before h5py writes
    (on a full disk h5py can crash the process): an OSError, and the run fails.

    Under multi_worker every worker backs up at the same epochs (`every_s` 0), the chief
    into the run's folder, the others each into a folder of their own; resuming, the
    others copy the chief's backup once the chief has picked it (`restore_from`), so all
    continue from the same epoch with the same weights.
    """

    def __init__(
        self, backup_dir, before_commit=None, every_s: float | Callable = 0.0, restore_from=None
    ):
        super().__init__(backup_dir, double_checkpoint=True)
        self.restore_from = restore_from
        # Called between the weights and the epoch number: the metrics logger's wait (it
        # stores the epochs it holds), so a backed-up epoch is always a logged one while
        # the log is written meanwhile.
        self.before_commit = before_commit or (lambda: None)
        # A backup at most this often (the stack's: the metrics logger's beat), or less
        # often when a backup costs more than store.WRITE_SHARE of it; a resume repeats
        # the epochs since, which are logged already.
        self.beat = store.Beat(every_s)

    def on_epoch_end(self, epoch, logs=None):
        now = time.monotonic()
        if not self.beat.due(now):
            return
        self.beat.last, self._waited = now, 0.0  # before the logger's wait: one beat with it
        with signals_deferred():
            super().on_epoch_end(epoch, logs)
        self.beat.took(time.monotonic() - now - self._waited)  # the wait is the logger's cost

    def on_train_begin(self, logs=None):
        self.beat.last = -math.inf  # the first epoch is backed up
        if self.restore_from is not None:
            self._copy_chiefs()
        pairs = [
            (self._weights_path, self._training_metadata_path),
            (self._prev_weights_path, self._prev_training_metadata_path),
        ]
        trusted = next((pair for pair in pairs if _matches(*pair)), None)
        for path in (p for pair in pairs for p in pair if pair is not trusted):
            if os.path.exists(path):
                os.remove(path)  # torn or unmatched: never restored from
        if trusted is not None and trusted is not pairs[0]:
            for old, new in zip(trusted, pairs[0], strict=True):
                os.replace(old, new)
        super().on_train_begin(logs)
        distribute.chief_ready("backup")  # the others may copy it now

    def _copy_chiefs(self):
        """The chief's backup, once it has picked it, as this worker's own."""
        distribute.wait_for_chief("backup")
        os.makedirs(self.backup_dir, exist_ok=True)
        for path in (self._weights_path, self._training_metadata_path):
            chiefs = os.path.join(self.restore_from, os.path.basename(path))
            if os.path.exists(chiefs):
                shutil.copy(chiefs, path)

    def _save_model(self):
        # Keras's own steps, with before_commit before the epoch number is written.
        os.makedirs(self.backup_dir, exist_ok=True)
        self._check_room()
        for path, prev in (
            (self._weights_path, self._prev_weights_path),
            (self._training_metadata_path, self._prev_training_metadata_path),
        ):
            if os.path.exists(path):
                shutil.copy(path, prev)
        self.model.save_weights(filepath=self._weights_path, overwrite=True)
        start = time.monotonic()
        self.before_commit()
        self._waited = time.monotonic() - start
        stamp = {"epoch": self._current_epoch, "batch": self._last_batch_seen}
        with open(self._training_metadata_path, "w") as f:
            json.dump(stamp | _fingerprint(self._weights_path), f)

    def _check_room(self) -> None:
        """Room for the copy of the last backup and the new weights, or ENOSPC now."""
        if os.path.exists(self._weights_path):
            size = os.path.getsize(self._weights_path)
        else:
            size = weights_bytes(self.model)
        check_room(self.backup_dir, 2 * size, "the epoch's backup")


class Checkpoint(keras.callbacks.ModelCheckpoint):
    """keras.callbacks.ModelCheckpoint that finds a disk without room for the model
    before h5py does (see Backup)."""

    def _save_model(self, epoch, batch, logs):
        folder = os.path.dirname(self.filepath) or "."
        # The whole model with its optimizer's slots: up to three times its weights.
        check_room(folder, 3 * weights_bytes(self.model), "the best model's checkpoint")
        super()._save_model(epoch, batch, logs)


def weights_bytes(model) -> int:
    """What a model's weights take in a file: their bytes, plus the file's structure."""
    return sum(int(w.numpy().nbytes) for w in model.weights) * 5 // 4


def check_room(folder: str, size: int, what: str) -> None:
    """An OSError (ENOSPC) when `folder`'s disk has less than `size` bytes and SPARE free."""
    os.makedirs(folder, exist_ok=True)
    need, free = size + SPARE, shutil.disk_usage(folder).free
    if free < need:
        problem = f"no room for {what} ({free >> 10} KiB free, {need >> 10} KiB needed)"
        raise OSError(errno.ENOSPC, problem, folder)


def _fingerprint(path: str) -> dict:
    """The size and CRC-32 of a file, read in blocks."""
    crc, size = 0, 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            crc, size = zlib.crc32(block, crc), size + len(block)
    return {"size": size, "crc32": crc}


def _matches(weights: str, metadata: str) -> bool:
    """A backup pair whose epoch file vouches for its weights file."""
    try:
        with open(metadata) as f:
            stamp = json.load(f)
        if "crc32" not in stamp:  # written before backups were fingerprinted
            return os.path.exists(weights)
        return {k: stamp.get(k) for k in ("size", "crc32")} == _fingerprint(weights)
    except (OSError, ValueError, AttributeError):
        return False
