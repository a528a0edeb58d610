"""The loaders: one `load_<source>(cfg, seed) -> Arrays` per class in `tfdl.data.schema`.

Everything here works offline: the scikit-learn sets ship with scikit-learn, the toy sets
and MNIST-1D are generated from the seed. Features come back as float32; labels as int64
numbered 0..k-1 for classification, float32 for regression. No splitting happens here.
"""

import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import datasets
from sklearn.preprocessing import LabelEncoder

from tfdl.data.schema import (
    BreastCancer,
    Circles,
    Csv,
    Diabetes,
    Digits,
    Iris,
    Mnist1D,
    Moons,
    PassTheClass,
    Spirals,
    Wine,
)
from tfdl.data.spec import Arrays, DataSpec, Splits
from tfdl.errors import ConfigError

RED_GREEN = ("red", "green")
MAX_AUTO_CLASSES = 20  # integer targets with more distinct values are taken as a regression
MIN_CSV_ROWS = 10
MAX_LISTED = 20  # column names quoted in an error message


def _classification(
    x: np.ndarray, y: np.ndarray, class_names, feature_names=(), task: str | None = None
) -> Arrays:
    names = tuple(str(c) for c in class_names)
    spec = DataSpec(
        input_shape=tuple(x.shape[1:]),
        task=task or ("binary" if len(names) == 2 else "multiclass"),
        num_classes=len(names),
        class_names=names,
        feature_names=tuple(str(f) for f in feature_names),
    )
    return Arrays(x=x.astype(np.float32), y=y.astype(np.int64), spec=spec)


def _regression(x: np.ndarray, y: np.ndarray, feature_names=()) -> Arrays:
    spec = DataSpec(
        input_shape=tuple(x.shape[1:]),
        task="regression",
        feature_names=tuple(str(f) for f in feature_names),
    )
    return Arrays(x=x.astype(np.float32), y=y.astype(np.float32), spec=spec)


# --- scikit-learn's bundled data sets ---------------------------------------------------


def load_digits(cfg: Digits, seed: int) -> Arrays:
    bunch = datasets.load_digits()
    if cfg.as_images:
        # The pixels' names mean nothing to a conv net, which sees the 8x8 grid.
        return _classification(bunch.images[..., np.newaxis], bunch.target, bunch.target_names)
    return _classification(bunch.data, bunch.target, bunch.target_names, bunch.feature_names)


def _bundled(loader) -> Arrays:
    bunch = loader()
    return _classification(bunch.data, bunch.target, bunch.target_names, bunch.feature_names)


def load_iris(cfg: Iris, seed: int) -> Arrays:
    return _bundled(datasets.load_iris)


def load_wine(cfg: Wine, seed: int) -> Arrays:
    return _bundled(datasets.load_wine)


def load_breast_cancer(cfg: BreastCancer, seed: int) -> Arrays:
    return _bundled(datasets.load_breast_cancer)


def load_diabetes(cfg: Diabetes, seed: int) -> Arrays:
    # scaled=False: the raw measurements, so that our own normalisation is the only one.
    bunch = datasets.load_diabetes(scaled=False)
    return _regression(bunch.data, bunch.target, bunch.feature_names)


# --- generated data sets ----------------------------------------------------------------


def load_mnist1d(cfg: Mnist1D, seed: int) -> Arrays:
    # Imported here: mnist1d pulls in scipy and matplotlib, which other sources don't need.
    from mnist1d.data import get_dataset_args, make_dataset

    if cfg.num_samples < 10:
        raise ConfigError(
            "data.num_samples",
            f"{cfg.num_samples} is too few: MNIST-1D makes num_samples // 10 signals per digit",
            "at least 10",
        )
    args = get_dataset_args()
    args.seed, args.num_samples = seed, cfg.num_samples
    # make_dataset reseeds the global numpy and random generators; put them back afterwards.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)  # never get_dataset: it downloads and writes a pickle
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    # Its own 80/20 split is undone: our split decides the fractions.
    x = np.concatenate([data["x"], data["x_test"]])
    y = np.concatenate([data["y"], data["y_test"]])
    if cfg.as_sequence:
        x = x[..., np.newaxis]
    return _classification(x, y, [str(d) for d in range(10)])


def load_pass_the_class(cfg: PassTheClass, seed: int) -> Arrays:
    rng = np.random.default_rng(seed)
    lectures = rng.integers(0, 16, size=cfg.n_samples)
    hours = rng.uniform(0.0, 12.0, size=cfg.n_samples)
    # The rule stated in PassTheClass's docstring.
    p_pass = 1.0 / (1.0 + np.exp(-(-9.0 + 0.6 * lectures + 0.75 * hours)))
    passed = rng.random(cfg.n_samples) < p_pass
    x = np.column_stack([lectures, hours])
    return _classification(x, passed, ("fail", "pass"), ("lectures_attended", "hours_on_project"))


def load_moons(cfg: Moons, seed: int) -> Arrays:
    x, y = datasets.make_moons(n_samples=cfg.n_samples, noise=cfg.noise, random_state=seed)
    return _classification(x, y, RED_GREEN, ("x1", "x2"))


def load_circles(cfg: Circles, seed: int) -> Arrays:
    x, y = datasets.make_circles(
        n_samples=cfg.n_samples, noise=cfg.noise, factor=cfg.factor, random_state=seed
    )
    return _classification(x, y, RED_GREEN, ("x1", "x2"))


def load_spirals(cfg: Spirals, seed: int) -> Arrays:
    rng = np.random.default_rng(seed)
    y = np.arange(cfg.n_samples) % 2  # alternate, so the classes differ by at most one point
    # sqrt spreads the points evenly along the arm instead of crowding the centre.
    angle = 2 * np.pi * cfg.turns * np.sqrt(rng.random(cfg.n_samples))
    radius = angle / (2 * np.pi)  # one unit further out per turn
    angle = angle + np.pi * y  # green is red rotated by half a turn
    x = np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
    x += rng.normal(scale=cfg.noise, size=x.shape)
    return _classification(x, y, RED_GREEN, ("x1", "x2"))


# --- any CSV file -----------------------------------------------------------------------


def _listing(names, limit: int = MAX_LISTED) -> str:
    names = [str(n) for n in names]
    text = ", ".join(names[:limit])
    return text + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


CSV_ERRORS = (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError)


def read_csv(
    path: str, nrows: int | None = None, field: str = "data.path", min_rows=MIN_CSV_ROWS, **options
) -> pd.DataFrame:
    """The file as a frame (its first `nrows` rows), or one line naming the setting `field`
    saying why it cannot be: missing, empty, not CSV, not UTF-8, fewer than `min_rows`
    rows (enough to split, for training). `options` go to pandas' reader."""
    if not Path(path).is_file():
        problem = f"{path} is not a file" if Path(path).exists() else f"no such file: {path}"
        raise ConfigError(field, problem, "a path to an existing CSV file")
    try:
        frame = pd.read_csv(path, nrows=nrows, **options)
    except pd.errors.EmptyDataError:
        raise ConfigError(field, f"{path} is empty", "a CSV file with a header") from None
    except CSV_ERRORS as err:
        raise csv_error(path, err, field) from None
    if len(frame) < min_rows:
        why = "too few to split into train/val/test" if min_rows == MIN_CSV_ROWS else "too few"
        raise ConfigError(
            field, f"{path} has {len(frame)} data rows, {why}", f"at least {min_rows} rows"
        )
    return frame


def csv_error(path: str, err: Exception, field: str = "data.path") -> ConfigError:
    """A file pandas could not parse, as one line."""
    if isinstance(err, UnicodeDecodeError):
        problem = f"{path} is not UTF-8 ({err.reason} at byte {err.start})"
    else:
        problem = f"cannot read {path} as CSV: {str(err).splitlines()[0] if str(err) else err}"
    return ConfigError(field, problem, "a comma-separated UTF-8 file with a header")


def check_features(frame: pd.DataFrame, cfg: Csv) -> pd.DataFrame:
    if cfg.target not in frame.columns:
        raise ConfigError(
            "data.target", f"no column {cfg.target!r} in {cfg.path}", _listing(frame.columns)
        )
    others = [c for c in frame.columns if c != cfg.target]
    named = [(n, "data.categorical") for n in cfg.categorical]
    for name, field in [*named, *([(cfg.text, "data.text")] if cfg.text else [])]:
        if name not in others:
            problem = f"{name!r} is the target" if name == cfg.target else f"no column {name!r}"
            raise ConfigError(field, f"{problem} in {cfg.path}", _listing(others))
    text = [cfg.text] if cfg.text else []
    features = frame.drop(columns=[cfg.target, *cfg.categorical, *text])
    if features.shape[1] == 0 and text and not cfg.categorical:
        return features  # the text alone is the input
    if features.shape[1] == 0:
        what = "the target and its categories" if cfg.categorical else "the target"
        raise ConfigError(
            "data.path", f"{cfg.path} has no numeric columns besides {what}", "feature columns"
        )
    check_target_present(frame[cfg.target], cfg)
    if cfg.fill_missing == "none" and features.isna().any().any():
        raise ConfigError(
            "data.path",
            f"missing values in {cfg.path}, {cells(features)}",
            "data.fill_missing: mean or zero, or a CSV without empty cells",
        )
    words = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if words:
        raise ConfigError(
            "data.path",
            f"non-numeric feature columns in {cfg.path}: {_listing(words)}",
            "numeric columns, or name them in data.categorical (or one in data.text)",
        )
    return features


def check_target_present(column: pd.Series, cfg: Csv) -> None:
    if column.isna().any():
        raise ConfigError(
            "data.target",
            f"missing values in {cfg.target!r} of {cfg.path}, {cells(column.to_frame())}",
            "a target in every row (drop the rows without one)",
        )


def cells(frame: pd.DataFrame) -> str:
    """Where the first empty cell is, as a user finds it: "column 'b', line 9 (3 more)"."""
    rows, cols = np.nonzero(frame.isna().to_numpy())
    more = f" ({len(rows) - 1} more)" if len(rows) > 1 else ""
    # Line numbers count the header line, as an editor shows them; a chunk of a streamed
    # file keeps its rows' numbers in the index.
    return f"column {frame.columns[cols[0]]!r}, line {frame.index[rows[0]] + 2}{more}"


def _csv_task(column: pd.Series, cfg: Csv) -> str:
    numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    if cfg.task == "regression":
        if not numeric:
            raise ConfigError(
                "data.task",
                f"target {cfg.target!r} is not numeric, so it cannot be a regression",
                "auto, binary, multiclass",
            )
        return "regression"
    if cfg.task != "auto":
        return cfg.task
    if not numeric:
        return "classification"
    if pd.api.types.is_integer_dtype(column) and column.nunique() <= MAX_AUTO_CLASSES:
        return "classification"
    return "regression"


def load_csv(cfg: Csv, seed: int) -> Arrays | Splits:
    from tfdl.data import csv_stream

    if csv_stream.streams(cfg):  # too large to hold: checked in chunks, streamed by tf.data
        return csv_stream.load_streamed(cfg, seed)
    frame = read_csv(cfg.path)
    arrays = _load_table(frame, cfg)
    if cfg.text and arrays.x.shape[1] == 0:  # the text column is the whole input
        spec = replace(arrays.spec, input_shape=(), input_dtype="string", feature_names=(cfg.text,))
        return Arrays(x=texts_of(frame[cfg.text]), y=arrays.y, spec=spec)
    return _with_columns(arrays, frame, cfg) if cfg.categorical or cfg.text else arrays


def texts_of(column: pd.Series) -> np.ndarray:
    """A text column as Python strings; an empty cell is an empty text."""
    return column.fillna("").astype(str).to_numpy(object)


def _with_columns(arrays: Arrays, frame: pd.DataFrame, cfg: Csv) -> Arrays:
    """The numeric features as "features", each category column as an input of its own
    (integers stay integers, anything else is read as strings), the text column too."""
    kinds = {}
    for name in cfg.categorical:
        column = frame[name]
        if column.isna().any():
            raise ConfigError(
                "data.categorical",
                f"missing values in {cfg.path}, {cells(frame[[name]])}",
                "a category in every row (an empty string counts as one)",
            )
        dtype = "int64" if pd.api.types.is_integer_dtype(column) else "string"
        kinds[name] = category_kind(dtype, cfg)
    text = {"column": cfg.text} if cfg.text else None
    spec = replace(arrays.spec, categorical=kinds or None, text=text)
    return Arrays(x=table_inputs(frame, spec), y=arrays.y, spec=spec)


def table_inputs(frame: pd.DataFrame, spec: DataSpec):
    """A frame's columns as the model of `spec` takes them: its text alone (strings), its
    numbers alone, or a table: the numbers as "features", each category column (integers,
    or strings) and the text column as inputs of their own."""
    if spec.input_dtype == "string":
        return texts_of(frame[spec.feature_names[0]])
    numbers = frame[list(spec.feature_names)].to_numpy(np.float32)
    if not spec.table:
        return numbers
    inputs = {"features": numbers}
    for name, kind in (spec.categorical or {}).items():
        column = frame[name]
        strings = kind["dtype"] == "string"
        inputs[name] = column.astype(str).to_numpy(object) if strings else column.to_numpy(np.int64)
    if spec.text:
        inputs[spec.text["column"]] = texts_of(frame[spec.text["column"]])
    return inputs


def category_kind(dtype: str, cfg: Csv) -> dict:
    """How a category column enters the model: its values' type and their encoding."""
    kind = {"dtype": dtype, "encoding": cfg.category_encoding}
    if cfg.category_encoding == "embedding":
        kind["embedding_dim"] = cfg.category_embedding_dim
    return kind


def _load_table(frame: pd.DataFrame, cfg: Csv) -> Arrays:
    features = check_features(frame, cfg)
    x = features.to_numpy(dtype=np.float64)
    check_finite(x, features.columns, cfg)
    y, task, names = read_target(frame[cfg.target], cfg)
    if task == "regression":
        return _regression(x, y, features.columns)
    return _classification(x, y, names, features.columns, task)


def check_finite(x: np.ndarray, columns, cfg: Csv) -> None:
    """Gaps (NaN) were refused or are filled; infinities never."""
    if np.isinf(x).any():
        bad = columns[np.isinf(x).any(axis=0)]
        raise ConfigError(
            "data.path",
            f"infinite values in {cfg.path}, columns: {_listing(bad)}",
            "finite numbers",
        )


def read_target(column: pd.Series, cfg: Csv) -> tuple[np.ndarray, str, tuple]:
    """(labels, task, class names) of the target column: class ids numbered in sorted
    order of the original labels (strings, booleans and numbers alike), or the values."""
    task = _csv_task(column, cfg)
    if task == "regression":
        y = column.to_numpy(dtype=np.float64)
        if not np.isfinite(y).all():
            raise ConfigError("data.target", f"infinite values in {cfg.target!r}", "finite numbers")
        return y, task, ()
    labels = column if pd.api.types.is_numeric_dtype(column) else column.astype(str)
    encoder = LabelEncoder().fit(labels.to_numpy())
    k = len(encoder.classes_)
    if task == "binary" and k != 2:
        raise ConfigError(
            "data.task",
            f"task binary needs a target with 2 classes; {cfg.target!r} has {k}",
            "auto, multiclass, regression",
        )
    if k < 2:
        raise ConfigError(
            "data.target",
            f"target {cfg.target!r} has a single value, nothing to classify",
            "a column with at least 2 distinct values",
        )
    # An explicit `task: multiclass` keeps a softmax output even for two classes.
    explicit = cfg.task if cfg.task in ("binary", "multiclass") else None
    task = explicit or ("binary" if k == 2 else "multiclass")
    return encoder.transform(labels.to_numpy()), task, tuple(encoder.classes_)
