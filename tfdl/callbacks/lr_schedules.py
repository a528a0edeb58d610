"""Learning-rate schedules per optimizer step, from the `callbacks.lr_schedule` section.

Keras provides exponential, piecewise-constant and cosine-with-warmup decay; one-cycle
is written here. Lengths in the config are epochs, turned into steps here.
"""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfdl")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """One-cycle policy (Smith): cosine warm-up from max_lr/div_factor to max_lr over the
    first pct_start of the steps, then cosine annealing to max_lr/(div_factor*final_div)."""

    def __init__(self, max_lr, total_steps, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
        self.max_lr, self.total_steps = float(max_lr), int(total_steps)
        self.pct_start, self.div_factor = float(pct_start), float(div_factor)
        self.final_div_factor = float(final_div_factor)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        start = self.max_lr / self.div_factor
        end = start / self.final_div_factor
        up = max(1.0, self.pct_start * self.total_steps)
        down = max(1.0, self.total_steps - up)

        def cosine(a, b, t):  # from a to b as t goes 0 -> 1
            return b + (a - b) * 0.5 * (1.0 + ops.cos(math.pi * ops.clip(t, 0.0, 1.0)))

        return ops.where(
            step < up,
            cosine(start, self.max_lr, step / up),
            cosine(self.max_lr, end, (step - up) / down),
        )

    def get_config(self):
        return {
            "max_lr": self.max_lr,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
        }


def make_lr_schedule(cfg, lr0: float, steps_per_epoch: int, epochs: int):
    """A Keras LearningRateSchedule for an `lr_schedule` section."""
    schedules = keras.optimizers.schedules
    total = steps_per_epoch * epochs
    match cfg.kind:
        case "exponential":
            return schedules.ExponentialDecay(
                lr0, decay_steps=steps_per_epoch, decay_rate=cfg.decay_rate
            )
        case "piecewise":
            bounds = [b * steps_per_epoch for b in cfg.boundaries]
            return schedules.PiecewiseConstantDecay(bounds, list(cfg.values))
        case "cosine":
            warmup = cfg.warmup_epochs * steps_per_epoch
            if warmup == 0:
                return schedules.CosineDecay(lr0, decay_steps=max(1, total), alpha=cfg.alpha)
            return schedules.CosineDecay(
                0.0,
                decay_steps=max(1, total - warmup),
                alpha=cfg.alpha,
                warmup_target=lr0,
                warmup_steps=warmup,
            )
        case "one_cycle":
            return OneCycle(
                cfg.max_lr or lr0, total, cfg.pct_start, cfg.div_factor, cfg.final_div_factor
            )
    raise AssertionError(cfg.kind)  # the schema admits no other kind
