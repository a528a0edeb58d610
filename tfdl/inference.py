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
    model: a flat row of the right size is reshaped (e.g. 64 pixels -> 8x8x1). A model of
    pictures also reads image files, a model of texts .txt files (a file, or a folder of
    them: one row each, in name order)."""
    file = Path(path)
    if spec.task in SEQUENCE_TASKS:
        raise ConfigError("input", f"a {spec.task} model writes text", "tfdl generate")
    if _images(spec) or spec.text and not spec.table:
        media = _media(file, spec)
        if media is not None:
            return media
    if file.suffix not in SUFFIXES:
        raise ConfigError("input", f"{path}: unknown file type", _kinds(spec))
    if not file.is_file():
        raise ConfigError("input", f"{path}: no such file", _kinds(spec))
    if spec.text and not spec.table:
        return _text_column(file, spec)
    if spec.table:
        return _table(file, spec)
    x = _npy(file, spec) if file.suffix == ".npy" else _numeric_csv(file, spec)
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


def _npy(file: Path, spec: DataSpec) -> np.ndarray:
    """A NumPy array of numbers, with no gaps (NaN) unless the model fills them itself;
    or one line saying why not."""
    try:
        x = np.load(file, allow_pickle=False)  # never unpickle: a file could run code
    except (ValueError, OSError, EOFError) as err:
        problem = f"{file}: not a NumPy .npy array of numbers ({_first_line(err)})"
        raise ConfigError("input", problem, "an array saved by numpy.save") from None
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.number):
        kind = getattr(x, "dtype", type(x).__name__)
        raise ConfigError("input", f"{file}: an array of {kind}", "an array of numbers")
    flat = x.reshape(len(x), -1) if x.ndim else x.reshape(1, 1)
    bad = np.isinf(flat) if spec.fill is not None else ~np.isfinite(flat)
    if bad.any():
        rows, cols = np.nonzero(bad)
        problem = f"{file}: a missing or infinite value in row {rows[0]}, value {cols[0]}"
        raise ConfigError("input", problem, "finite numbers")
    return x


def _numeric_csv(file: Path, spec: DataSpec) -> np.ndarray:
    """The training's feature columns of a CSV, matched by name (in any order, other
    columns an error); without feature names (pixels, signals), every column in order."""
    import pandas as pd

    from tfdl.data.sources import _listing, cells, read_csv

    frame = read_csv(str(file), field="input", min_rows=1)
    names = list(spec.feature_names)
    if names:
        missing = [n for n in names if n not in frame.columns]
        extra = [c for c in frame.columns if c not in names]
        if missing or extra:
            parts = [f"missing {_listing(missing)}" if missing else ""]
            parts += [f"unexpected {_listing(extra)}" if extra else ""]
            problem = f"{file}: columns {'; '.join(p for p in parts if p)}"
            raise ConfigError("input", problem, f"the training's columns: {_listing(names)}")
        frame = frame[names]  # the training columns, in their order
    words = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if words:
        raise ConfigError("input", f"{file}: non-numeric columns {_listing(words)}", "numbers")
    if spec.fill is None and frame.isna().any().any():  # a model that fills gaps takes them
        raise ConfigError(
            "input", f"{file}: an empty cell, {cells(frame)}", "a number in every cell"
        )
    x = frame.to_numpy()
    if np.isinf(x).any():
        raise ConfigError("input", f"{file}: infinite values", "finite numbers")
    return x


def _first_line(err: Exception) -> str:
    return (str(err).splitlines() or [type(err).__name__])[0]


def _images(spec: DataSpec) -> bool:
    """A model of pictures (trained on an image folder): it also reads image files."""
    return bool(spec.stream) and spec.stream["kind"] == "images"


def _kinds(spec: DataSpec) -> str:
    if _images(spec):
        return "an image file (bmp, gif, jpeg, png), a folder of them, or a .npy file"
    if spec.text and not spec.table:
        return "a .txt file, a folder of them, or a .csv file with the text column"
    return "a .csv or .npy file"


def _media(file: Path, spec: DataSpec):
    """Images or texts from a file of that kind or a folder of them; None for another file."""
    from tfdl.data.folders import IMAGE_SUFFIXES, read_text

    suffixes = IMAGE_SUFFIXES if _images(spec) else (".txt",)
    if file.is_dir():
        files = sorted(f for f in file.iterdir() if f.suffix.lower() in suffixes)
        if not files:
            raise ConfigError(
                "input", f"{file}: no {', '.join(suffixes)} files in it", _kinds(spec)
            )
    elif file.suffix.lower() in suffixes:
        if not file.is_file():
            raise ConfigError("input", f"{file}: no such file", _kinds(spec))
        files = [file]
    else:
        return None
    if _images(spec):
        return np.stack([_pixels(f, spec) for f in files])
    try:
        return np.asarray([read_text(f) for f in files], dtype=object)
    except ConfigError as err:
        raise ConfigError("input", err.problem, err.allowed) from None


def _pixels(file: Path, spec: DataSpec) -> np.ndarray:
    """An image as the model takes it: its pixels 0..255 resized to the training size
    (bilinear, as the training pipeline does), in the training colour mode."""
    from PIL import Image, UnidentifiedImageError

    height, width = spec.stream["image_size"]
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[spec.stream["channels"]]
    try:
        with Image.open(file) as image:
            pixels = image.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
    except (UnidentifiedImageError, OSError) as err:
        raise ConfigError("input", f"{file} is not an image ({err})", _kinds(spec)) from None
    return np.asarray(pixels, dtype=np.float32).reshape(height, width, -1)


def _text_column(file: Path, spec: DataSpec) -> np.ndarray:
    """Texts from a CSV: the training's text column, or the file's only column."""

    from tfdl.data.sources import read_csv

    if file.suffix != ".csv":
        raise ConfigError("input", f"{file}: the model takes texts", _kinds(spec))
    frame = read_csv(str(file), field="input", min_rows=1)
    names = [n for n in spec.feature_names if n in frame.columns]
    if not names and len(frame.columns) != 1:
        want = spec.feature_names[0] if spec.feature_names else "text"
        raise ConfigError("input", f"{file}: no column {want!r}", "the text column, or one column")
    from tfdl.data.sources import texts_of

    return texts_of(frame[names[0] if names else frame.columns[0]])


def _table(file: Path, spec: DataSpec) -> dict:
    """A table with category or text columns as the model's inputs: the numeric columns
    (by their training names) as "features", each other column as its own input."""
    import pandas as pd

    text = [spec.text["column"]] if spec.text else []
    columns = [*spec.feature_names, *(spec.categorical or {}), *text]
    if file.suffix != ".csv":
        raise ConfigError("input", f"{file}: the model takes named columns", "a .csv file")
    from tfdl.data.sources import cells, read_csv

    frame = read_csv(str(file), field="input", min_rows=1)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ConfigError("input", f"{file}: no column {missing[0]!r}", ", ".join(columns))
    numbers = frame[list(spec.feature_names)]
    if not all(pd.api.types.is_numeric_dtype(t) for t in numbers.dtypes):
        raise ConfigError("input", f"{file}: non-numeric feature columns", "numbers there")
    # A category is never missing; a number may be where the model fills gaps itself.
    gaps = frame[[*(spec.feature_names if spec.fill is None else ()), *(spec.categorical or {})]]
    if gaps.isna().any().any():
        raise ConfigError("input", f"{file}: an empty cell, {cells(gaps)}", "a value in every cell")
    for name, kind in (spec.categorical or {}).items():
        if kind["dtype"] == "int64" and not pd.api.types.is_integer_dtype(frame[name]):
            raise ConfigError("input", f"{file}: column {name!r} is not whole numbers", "integers")
    from tfdl.data.sources import table_inputs

    return table_inputs(frame, spec)


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

    if isinstance(x, dict) or x.dtype == object:  # a table, or texts
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
