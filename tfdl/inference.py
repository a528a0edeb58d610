"""Models back from runs: evaluate a logged model on a split, predict on new inputs.

Input problems (unknown run, no model, a file of the wrong shape) are found from the
run's data spec before TensorFlow loads, and reported as one-line ConfigErrors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfdl.data.spec import SEQUENCE_TASKS, DataSpec
from tfdl.errors import ConfigError

SUFFIXES = (".csv", ".npy")


def read_inputs(path: str, spec: DataSpec) -> np.ndarray:
    """Rows of model input from a .npy array or a CSV of numeric columns, shaped for the
    model: a flat row of the right size is reshaped (e.g. 64 pixels -> 8x8x1)."""
    file = Path(path)
    if file.suffix not in SUFFIXES:
        raise ConfigError("input", f"{path}: unknown file type", "a .csv or .npy file")
    if not file.is_file():
        raise ConfigError("input", f"{path}: no such file", "an existing .csv or .npy file")
    if spec.task in SEQUENCE_TASKS:
        raise ConfigError("input", f"a {spec.task} model writes text", "tfdl generate")
    if spec.categorical:
        return _table(file, spec)
    if file.suffix == ".npy":
        x = np.load(file, allow_pickle=False)
    else:
        import pandas as pd

        frame = pd.read_csv(file)
        if spec.feature_names and set(spec.feature_names) <= set(frame.columns):
            frame = frame[list(spec.feature_names)]  # the training columns, in their order
        if not all(pd.api.types.is_numeric_dtype(t) for t in frame.dtypes):
            raise ConfigError("input", f"{path}: non-numeric columns", "numeric columns")
        x = frame.to_numpy()
    want = tuple(spec.input_shape)
    if x.ndim >= 1 and x.shape[1:] != want and int(np.prod(x.shape[1:])) == int(np.prod(want)):
        x = x.reshape(len(x), *want)
    if x.ndim < 1 or x.shape[1:] != want:
        raise ConfigError(
            "input",
            f"{path}: rows of shape {tuple(x.shape[1:])}, the model takes {want}",
            f"rows of {int(np.prod(want))} numbers",
        )
    return x


def _table(file: Path, spec: DataSpec) -> dict:
    """A table with category columns as the model's inputs: the numeric columns (by their
    training names) as "features", each category column as its own input."""
    import pandas as pd

    columns = [*spec.feature_names, *spec.categorical]
    if file.suffix != ".csv":
        raise ConfigError("input", f"{file}: the model takes named columns", "a .csv file")
    frame = pd.read_csv(file)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ConfigError("input", f"{file}: no column {missing[0]!r}", ", ".join(columns))
    numbers = frame[list(spec.feature_names)]
    if not all(pd.api.types.is_numeric_dtype(t) for t in numbers.dtypes):
        raise ConfigError("input", f"{file}: non-numeric feature columns", "numbers there")
    x = {"features": numbers.to_numpy(np.float32)}
    for name, kind in spec.categorical.items():
        column = frame[name]
        if kind["dtype"] == "int64" and not pd.api.types.is_integer_dtype(column):
            raise ConfigError("input", f"{file}: column {name!r} is not whole numbers", "integers")
        strings = kind["dtype"] == "string"
        x[name] = column.astype(str).to_numpy(object) if strings else column.to_numpy(np.int64)
    return x


def scales_itself(model) -> bool:
    """Whether a model scales its own inputs (a Normalization layer); models of runs from
    before that logged the scaling beside them instead (normaliser.json)."""
    import keras

    return any(isinstance(layer, keras.layers.Normalization) for layer in model.layers)


def scaled_for(model, x, normaliser: dict | None):
    """Raw inputs as `model` takes them: a logged normaliser (x' = x * weight + bias per
    flattened value) is applied for a model that does not scale its inputs itself. A
    table with categories (a dict of inputs) comes from runs that scale inside the model."""
    from tfdl.data.split import apply_normaliser

    if isinstance(x, dict):
        return x
    return apply_normaliser(x, None if scales_itself(model) else normaliser)


def predictions_frame(probs: np.ndarray, spec: DataSpec):
    """Predictions as a table: the class and each class's probability, or the value."""
    import pandas as pd

    if spec.task == "regression":
        return pd.DataFrame({"prediction": probs.reshape(-1)})
    if spec.task == "binary":
        p = probs.reshape(-1)
        probs = np.stack([1 - p, p], axis=1)
    names = list(spec.class_names) or [str(i) for i in range(probs.shape[1])]
    frame = pd.DataFrame({"prediction": [names[i] for i in probs.argmax(axis=1)]})
    for i, name in enumerate(names):
        frame[f"p_{name}"] = probs[:, i]
    return frame


def evaluate(model, p, split: str) -> dict[str, float]:
    """The metrics of a logged model (which comes back uncompiled) on one split of the
    prepared pipeline it was trained on."""
    from tfdl.compile import compile_model
    from tfdl.training import evaluate as evaluate_split

    return evaluate_split(compile_model(model, p), p, split)
