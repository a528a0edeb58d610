"""What a data set looks like to a model builder, and the arrays a source hands over."""

from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

# language_model: next-token prediction over a vocabulary, targets are the inputs shifted
# by one; seq2seq: an encoder-decoder maps one token sequence to another (x is a dict).
Task = Literal["binary", "multiclass", "regression", "language_model", "seq2seq"]
SEQUENCE_TASKS = ("language_model", "seq2seq")


@dataclass(frozen=True)
class DataSpec:
    """Shapes and task of a data set: all a builder needs to size its input and output."""

    input_shape: tuple[int, ...]
    task: Task
    num_classes: int | None = None  # classification: number of classes; LM: vocabulary size
    class_names: tuple[str, ...] = ()
    feature_names: tuple[str, ...] = ()
    input_dtype: str = "float32"
    vocabulary: tuple[str, ...] = ()  # token strings by id, for language models and seq2seq
    target_length: int | None = None  # seq2seq: tokens per target (decoder) sequence
    # The scaling fitted on the training split, for the model's Normalization layer:
    # {"how", "mean", "variance"} per input value (nested lists of input_shape); None: none.
    normalizer: dict | None = None
    # Missing values (NaN) filled before the scaling, fitted on the training split:
    # {"how": "mean" | "zero", "values": nested lists of input_shape}; None: no gaps allowed.
    fill: dict | None = None
    # A table's category columns, inputs of their own beside the numeric "features":
    # {column: {"dtype": "string" | "int64", "vocabulary": [training split's values]}}.
    categorical: dict | None = None
    # Text, vectorised inside the model by the training split's vocabulary: {"vocabulary",
    # "max_tokens", "sequence_length", "embedding_dim", "column"}; "column" names a table's
    # text column, None when the text is the whole input.
    text: dict | None = None
    # Inputs read from files as batches are drawn rather than held in the splits:
    # {"kind": "images", "image_size": [H, W], "channels": C, "cache": "none" | ...}.
    stream: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DataSpec":
        tuples = ("input_shape", "class_names", "feature_names", "vocabulary")
        return cls(**{k: tuple(v) if k in tuples else v for k, v in d.items()})

    @property
    def table(self) -> bool:
        """Named columns of different kinds (numbers, categories, text): a dict of inputs."""
        return bool(self.categorical) or bool(self.text and self.text.get("column"))

    @property
    def body_shape(self) -> tuple[int, ...]:
        """What a builder's layers see after the input layers: a text becomes
        `sequence_length` word vectors of `embedding_dim` values."""
        if self.text and not self.text.get("column"):
            return (self.text["sequence_length"], self.text["embedding_dim"])
        return tuple(self.input_shape)

    @property
    def output_units(self) -> int:
        """Neurons of the output layer: one for binary and regression, one per class otherwise."""
        if self.task in ("binary", "regression"):
            return 1
        return int(self.num_classes)


def take(x, rows):
    """Rows of an array, or of each array in a dict of model inputs (seq2seq)."""
    return {k: v[rows] for k, v in x.items()} if isinstance(x, dict) else x[rows]


@dataclass
class Arrays:
    """A whole data set as a source returns it, before any split."""

    x: np.ndarray | dict[str, np.ndarray]
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
    info: dict = field(default_factory=dict)  # e.g. the normalisation's statistics, for logging
