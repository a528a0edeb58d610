"""The lecture's "try lots of learning rates": an exponential learning-rate sweep.

Train from the initial weights for a few hundred steps while the learning rate grows
exponentially from min_lr to max_lr, record the loss of every step, and suggest the rate
where the smoothed loss falls fastest (before it bottoms out and diverges). This module
imports no TensorFlow until the sweep runs, so its settings are checked at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfdl import tracking
from tfdl.errors import ConfigError


def check_sweep(min_lr: float, max_lr: float, steps: int) -> None:
    """ConfigError unless the sweep goes up from a positive rate over enough steps."""
    if not 0 < min_lr < max_lr:
        problem = f"the sweep must go up from a positive rate, got {min_lr} to {max_lr}"
        raise ConfigError("min_lr", problem, "0 < min_lr < max_lr", ("min_lr", "max_lr"))
    if steps < 10:
        raise ConfigError("steps", f"{steps} is too few to see a trend", ">= 10")


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


def lr_find(p, *, min_lr: float, max_lr: float, steps: int, progress: bool = True) -> Sweep:
    """Sweep the learning rate on the prepared pipeline's model and training data, recorded
    as an MLflow run; `progress` shows a progress bar over the steps. The settings are
    checked at the edge (`check_sweep`, before the data loads)."""
    from tfdl.callbacks.lr_sweep import LRSweep
    from tfdl.training import build

    # The sweep owns the learning rate: no schedule, no plateau callback.
    cfg = p.cfg.model_copy(deep=True)
    cfg.callbacks.lr_schedule = None
    p = p.with_config(cfg)
    model = build(p)
    sweep = LRSweep(min_lr, max_lr, steps, progress=progress)
    settings = {"lr_find.min_lr": min_lr, "lr_find.max_lr": max_lr, "lr_find.steps": steps}
    interrupted = "interrupted: the sweep is incomplete; run it again"
    with tracking.training_run(
        p,
        kind="lr_find",
        run_name="lr-find",
        tags={"tfdl.kind": "lr_find"},
        interrupted=interrupted,
    ) as run_id:
        train = p.dataset("train", repeat=True)
        # shuffle=False: the stream shuffles itself (Keras warns when told to as well).
        model.fit(
            train, epochs=steps, steps_per_epoch=1, callbacks=[sweep], verbose=0, shuffle=False
        )
        suggestion = suggest(sweep.lrs, sweep.losses)
        tracking.log_lr_find(
            run_id, settings, sweep.lrs, sweep.losses, smooth(sweep.losses), suggestion
        )
    return Sweep(run_id, sweep.lrs, sweep.losses, suggestion)
