"""The learning-rate sweep as a Keras callback: one rate per step, growing exponentially."""

import keras
import numpy as np

from tfdl.lr_find import smooth


class LRSweep(keras.callbacks.Callback):
    """Run as `fit(epochs=steps, steps_per_epoch=1)`: each Keras "epoch" is one batch,
    so the epoch's loss is that batch's loss (batch logs hold a running mean instead).
    Rate i is min_lr * (max_lr / min_lr) ** (i / (steps - 1)); the sweep stops early once
    the loss is not finite or its smoothed value exceeds `diverge` times the lowest one
    (single batches are too noisy to judge by). `progress`: a progress bar over the steps.
    """

    def __init__(self, min_lr, max_lr, steps, diverge: float = 4.0, progress: bool = False):
        super().__init__()
        self.rates = np.geomspace(min_lr, max_lr, steps)
        self.diverge = diverge
        self.lrs: list[float] = []
        self.losses: list[float] = []
        # Keras' own bar; lr and loss shown as they are now, not averaged over the steps.
        bar = keras.utils.Progbar(steps, stateful_metrics=["lr", "loss"], unit_name="step")
        self.bar = bar if progress else None

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate = float(self.rates[epoch])

    def on_epoch_end(self, epoch, logs=None):
        loss = float(logs["loss"])
        self.lrs.append(float(self.rates[epoch]))
        self.losses.append(loss)
        smoothed = smooth(self.losses)
        if not np.isfinite(loss) or smoothed[-1] > self.diverge * smoothed.min():
            self.model.stop_training = True
        if self.bar is not None:
            values = [("lr", self.lrs[-1]), ("loss", loss)]
            self.bar.update(epoch + 1, values, finalize=self.model.stop_training)

    def on_train_end(self, logs=None):
        if self.bar is not None and not self.model.stop_training:
            self.bar.update(len(self.lrs), finalize=True)
