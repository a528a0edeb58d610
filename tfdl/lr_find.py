"""The lecture's "try lots of learning rates": an exponential learning-rate sweep.

Train from the initial weights for a few hundred steps while the learning rate grows
exponentially from min_lr to max_lr, record the loss of every step, and suggest the rate
where the smoothed loss falls fastest (before it bottoms out and diverges).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from tfdl import tracking
from tfdl.compile import prepare


class LRSweep(keras.callbacks.Callback):
    """Run as `fit(epochs=steps, steps_per_epoch=1)`: each Keras "epoch" is one batch,
    so the epoch's loss is that batch's loss (batch logs hold a running mean instead).
    Rate i is min_lr * (max_lr / min_lr) ** (i / (steps - 1)); the sweep stops early once
    the loss is not finite or its smoothed value exceeds `diverge` times the lowest one
    (single batches are too noisy to judge by)."""

    def __init__(self, min_lr: float, max_lr: float, steps: int, diverge: float = 4.0):
        super().__init__()
        self.rates = np.geomspace(min_lr, max_lr, steps)
        self.diverge = diverge
        self.lrs: list[float] = []
        self.losses: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate = float(self.rates[epoch])

    def on_epoch_end(self, epoch, logs=None):
        loss = float(logs["loss"])
        self.lrs.append(float(self.rates[epoch]))
        self.losses.append(loss)
        smoothed = smooth(self.losses)
        if not np.isfinite(loss) or smoothed[-1] > self.diverge * smoothed.min():
            self.model.stop_training = True


def smooth(losses, beta: float = 0.95) -> np.ndarray:
    """Exponential moving average with bias correction (early values are not pulled to 0)."""
    avg, out = 0.0, []
    for i, loss in enumerate(losses, start=1):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta**i))
    return np.array(out)


def suggest(lrs, losses, skip: float = 0.1) -> float:
    """The rate of steepest descent of the smoothed loss against log(lr), looked for
    between the first `skip` of the sweep (the average is still settling there) and the
    smoothed minimum (past it the loss diverges)."""
    lrs, smoothed = np.asarray(lrs), smooth(losses)
    finite = np.isfinite(smoothed)
    lrs, smoothed = lrs[finite], smoothed[finite]
    start = int(skip * len(lrs))
    stop = max(int(np.argmin(smoothed)), start + 2)
    slopes = np.gradient(smoothed[start : stop + 1], np.log(lrs[start : stop + 1]))
    return float(lrs[start + int(np.argmin(slopes))])


@dataclass
class Sweep:
    run_id: str
    lrs: list[float]
    losses: list[float]
    suggestion: float


def lr_find(cfg, *, min_lr: float, max_lr: float, steps: int, prepared=None) -> Sweep:
    """Sweep the learning rate on the pipeline's model and training data; log an MLflow run."""
    from tfdl.train import build, dataset

    cfg, splits = prepared or prepare(cfg)
    # The sweep owns the learning rate: no schedule, no plateau callback.
    cfg = cfg.model_copy(deep=True)
    cfg.callbacks.lr_schedule = None
    model = build(cfg, splits.spec)
    train_ds = dataset(cfg, splits, "train", repeat=True)
    sweep = LRSweep(min_lr, max_lr, steps)
    settings = {"lr_find.min_lr": min_lr, "lr_find.max_lr": max_lr, "lr_find.steps": steps}
    with tracking.start_run(
        cfg.to_dict(),
        spec=splits.spec,
        tags=tracking.run_tags(cfg, None) | {"tfdl.kind": "lr_find"},
        run_name="lr-find",
        experiment=cfg.tracking.experiment,
    ) as run:
        model.fit(train_ds, epochs=steps, steps_per_epoch=1, callbacks=[sweep], verbose=0)
        suggestion = suggest(sweep.lrs, sweep.losses)
        tracking.log_lr_find(settings, sweep.lrs, sweep.losses, smooth(sweep.losses), suggestion)
    return Sweep(run.info.run_id, sweep.lrs, sweep.losses, suggestion)
