"""The callback stack: one list, assembled in a fixed order from the `callbacks` section."""

from dataclasses import dataclass, field
from pathlib import Path

import keras

from tfdl import store
from tfdl.callbacks.backup import Backup, Checkpoint
from tfdl.callbacks.dropout_schedule import DropoutScheduler
from tfdl.callbacks.epoch_time import EpochTimer
from tfdl.callbacks.gap import GeneralisationGap
from tfdl.callbacks.learning_rate import LearningRateLogger
from tfdl.callbacks.metrics_logger import MetricsLogger
from tfdl.callbacks.nan import FailOnNaN
from tfdl.callbacks.symmetry import HiddenUnits

# The order callbacks run each epoch. Loggers of the epoch's facts come first (its wall
# time first, so it counts no other callback's work; the learning rate before
# ReduceLROnPlateau lowers it); MLflow logging follows everything
# that writes into the logs; the backup comes last, so a resumed run never has a backed-up
# epoch whose metrics were not logged.
ORDER = (
    "epoch_time",
    "learning_rate",
    "dropout_schedule",
    "gap",
    "gradient_health",
    "hidden_units",
    "terminate_on_nan",
    "reduce_lr_on_plateau",
    "early_stopping",
    "model_checkpoint",
    "metrics_logger",
    "backup",
)


@dataclass
class Stack:
    callbacks: list[keras.callbacks.Callback]
    named: dict[str, keras.callbacks.Callback] = field(default_factory=dict)

    def summary(self) -> tuple[dict[str, float], dict[str, str]]:
        """Metrics and tags about the whole training, read off the callbacks after fit."""
        metrics, tags = {}, {}
        stopper = self.named.get("early_stopping")
        if stopper is not None:
            # Keras counts epochs from 0; MLflow steps and these from 1. 0: did not stop.
            metrics["stopped_epoch"] = stopper.stopped_epoch + 1 if stopper.stopped_epoch else 0
            if stopper.best_epoch is not None and stopper.best is not None:
                metrics["best_epoch"] = stopper.best_epoch + 1
        health = self.named.get("gradient_health")
        if health is not None:
            tags |= health.tags()
        return metrics, tags

    @property
    def best_model(self) -> Path | None:
        checkpoint = self.named.get("model_checkpoint")
        path = Path(checkpoint.filepath) if checkpoint else None
        return path if path and path.exists() else None


def build_callbacks(
    cfg,
    *,
    log=None,
    logged_epochs: int = 0,
    run_dir: Path | None = None,
    probe=None,
    backup_every_s: float = store.LOG_EVERY_S,
    restore_from: Path | None = None,
) -> Stack:
    """Keras callbacks for a `CallbacksConfig`, in ORDER.

    log: called with (logs, epoch) each epoch (MLflow); epochs up to `logged_epochs` are
    not logged again on resume. run_dir: where the backup and best checkpoint live.
    probe: a fixed (x, y) training batch for gradient health. backup_every_s: backups at
    most this often. restore_from: another backup folder to resume from (a multi_worker
    worker other than the chief resumes from the chief's).
    """
    from tfdl.callbacks.gradients import GradientHealth  # imports TensorFlow directly

    made: dict[str, keras.callbacks.Callback] = {
        "epoch_time": EpochTimer(),
        "learning_rate": LearningRateLogger(),
    }
    if cfg.dropout_schedule is not None:
        made["dropout_schedule"] = DropoutScheduler(cfg.dropout_schedule.rate)
    made["gap"] = GeneralisationGap()
    if cfg.gradient_health is not None and probe is not None:
        g = cfg.gradient_health
        made["gradient_health"] = GradientHealth(*probe, g.vanish_below, g.explode_above)
    if cfg.hidden_units is not None:
        made["hidden_units"] = HiddenUnits(cfg.hidden_units.tolerance)
    if cfg.terminate_on_nan:
        made["terminate_on_nan"] = FailOnNaN()
    if cfg.reduce_lr_on_plateau is not None:
        made["reduce_lr_on_plateau"] = keras.callbacks.ReduceLROnPlateau(
            **cfg.reduce_lr_on_plateau.model_dump(), verbose=0
        )
    if cfg.early_stopping is not None:
        made["early_stopping"] = keras.callbacks.EarlyStopping(
            **cfg.early_stopping.model_dump(), verbose=0
        )
    if cfg.model_checkpoint is not None and run_dir is not None:
        made["model_checkpoint"] = Checkpoint(
            str(run_dir / "best.keras"), **cfg.model_checkpoint.model_dump(), save_best_only=True
        )
    if log is not None:
        made["metrics_logger"] = MetricsLogger(log, logged_epochs)
    if cfg.backup and run_dir is not None:
        logger = made.get("metrics_logger")
        wait = logger.wait if logger else None
        made["backup"] = Backup(
            str(run_dir / "backup"), wait, every_s=backup_every_s, restore_from=restore_from
        )
    ordered = {name: made[name] for name in ORDER if name in made}
    return Stack(list(ordered.values()), ordered)
