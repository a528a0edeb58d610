"""The callback stack: one list, assembled in a fixed order from the `callbacks` section."""

import keras

from tfdl.callbacks.learning_rate import LearningRateLogger
from tfdl.callbacks.metrics_logger import MetricsLogger

__all__ = ["ORDER", "LearningRateLogger", "MetricsLogger", "build_callbacks"]

# The order callbacks run in each epoch. The learning-rate logger goes first so it records
# the rate the epoch trained with, before ReduceLROnPlateau lowers it for the next one.
ORDER = ("learning_rate", "reduce_lr_on_plateau", "early_stopping")


def build_callbacks(cfg) -> list[keras.callbacks.Callback]:
    """Keras callbacks for a `CallbacksConfig`, in ORDER."""
    stack = [LearningRateLogger()]
    if cfg.reduce_lr_on_plateau is not None:
        stack.append(
            keras.callbacks.ReduceLROnPlateau(**cfg.reduce_lr_on_plateau.model_dump(), verbose=0)
        )
    if cfg.early_stopping is not None:
        stack.append(keras.callbacks.EarlyStopping(**cfg.early_stopping.model_dump(), verbose=0))
    return stack
