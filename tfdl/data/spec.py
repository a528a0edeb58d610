"""What a data set looks like to a model builder, and the arrays a source hands over."""

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Task = Literal["binary", "multiclass", "regression", "language_model"]


@dataclass(frozen=True)
class DataSpec:
    """Shapes and task of a data set: all a builder needs to size its input and output."""

    input_shape: tuple[int, ...]
    task: Task
    num_classes: int | None = None  # classification: number of classes; LM: vocabulary size
    class_names: tuple[str, ...] = ()
    feature_names: tuple[str, ...] = ()
    input_dtype: str = "float32"

    @property
    def output_units(self) -> int:
        """Neurons of the output layer: one for binary and regression, one per class otherwise."""
        if self.task in ("binary", "regression"):
            return 1
        return int(self.num_classes)


@dataclass
class Arrays:
    """A whole data set as a source returns it, before any split."""

    x: np.ndarray
    y: np.ndarray
    spec: DataSpec


@dataclass
class Splits:
    """Train / validation / test arrays after the split and the normalisation fitted on train."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    spec: DataSpec
    info: dict = field(default_factory=dict)  # e.g. normaliser statistics, for logging
