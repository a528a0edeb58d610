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
    import pandas as pd

    frame = pd.read_csv(file) if file.suffix == ".csv" else None
    if frame is None:
        raise ConfigError("input", f"{file}: the model takes texts", _kinds(spec))
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
    frame = pd.read_csv(file)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ConfigError("input", f"{file}: no column {missing[0]!r}", ", ".join(columns))
    numbers = frame[list(spec.feature_names)]
    if not all(pd.api.types.is_numeric_dtype(t) for t in numbers.dtypes):
        raise ConfigError("input", f"{file}: non-numeric feature columns", "numbers there")
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
