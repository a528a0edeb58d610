"""Train / validation / test split and the normalisation fitted on the training split only
(applied by the model's first layer, so the splits and every consumer keep raw inputs).

The test split is set aside first and the validation split is taken from what remains, both
stratified by class for classification so every split has the whole set's class balance.
Scaling statistics come from the training split alone: the validation and test samples stand
for data the model has never seen, so they must not leak into the preprocessing either.
"""

import importlib
from dataclasses import replace

import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from tfdl.data import sources
from tfdl.data.schema import SourceConfig
from tfdl.data.spec import Arrays, Splits, take
from tfdl.errors import ConfigError

SCALERS = {"standard": StandardScaler, "minmax": MinMaxScaler}


def load_splits(cfg: SourceConfig, seed: int) -> Splits:
    """Load the source `cfg` describes and split it; `seed` is the training seed, used when
    the data section sets none. A source may split itself (a text corpus splits by
    document, so overlapping windows never straddle train and test): then it returns Splits.
    """
    seed = cfg.seed if cfg.seed is not None else seed
    loaded = get_loader(cfg.loader)(cfg, seed)
    return loaded if isinstance(loaded, Splits) else split_and_normalise(loaded, cfg, seed)


def get_loader(ref: str):
    """A source's loader: a function of tfdl.data.sources, or "module:function" in tfdl.data."""
    module, _, name = ref.rpartition(":")
    owner = importlib.import_module(f"tfdl.data.{module}") if module else sources
    return getattr(owner, name, None)


def split_and_normalise(arrays: Arrays, cfg: SourceConfig, seed: int) -> Splits:
    """Split `arrays` by `cfg`'s fractions (deterministic in `seed`) and fit the
    normalisation on the training split. The splits keep their raw values: the fitted
    scaling travels in the spec (`spec.normalizer`) and becomes the model's first layer."""
    stratified = arrays.spec.task in ("binary", "multiclass")
    return splits_from_rows(arrays, split_rows(arrays.y, cfg, seed, stratified), cfg, seed)


def splits_from_rows(arrays: Arrays, rows, cfg: SourceConfig, seed: int) -> Splits:
    """The Splits of `arrays` at the given (train, val, test) row indices, with `cfg`'s
    normalisation fitted on the training rows. Raw inputs a source hands over in a narrower
    type (uint8 pixels) become float32 split by split, never the whole set at once."""
    train, val, test = rows
    info = {"n_train": len(train), "n_val": len(val), "n_test": len(test), "seed": int(seed)}
    # Token ids are names, not magnitudes: they are never scaled.
    how = cfg.normalize if arrays.spec.input_dtype == "float32" else "none"
    x_train = _take_input(arrays, train)
    spec = arrays.spec
    numeric = x_train
    if spec.input_dtype == "string":  # a text: its words are fitted, nothing is scaled
        return _text_splits(arrays, rows, replace(spec, text=fit_text(x_train, cfg)), info)
    if spec.table:  # a table with categories or text: the numbers are its "features"
        numeric = x_train["features"]
        if spec.categorical:
            spec = replace(spec, categorical=fit_vocabularies(x_train, spec.categorical))
        if spec.text:
            column = spec.text["column"]
            spec = replace(spec, text={**fit_text(x_train[column], cfg), "column": column})
    fill = fit_fill(numeric, getattr(cfg, "fill_missing", "none"))
    filled = numeric if fill is None else np.where(np.isnan(numeric), fill["values"], numeric)
    normalizer = fit_normalizer(filled, how)
    info |= {"normalize": how, **_summary(normalizer)}
    return Splits(
        x_train=x_train,
        y_train=arrays.y[train],
        x_val=_take_input(arrays, val),
        y_val=arrays.y[val],
        x_test=_take_input(arrays, test),
        y_test=arrays.y[test],
        spec=replace(spec, normalizer=normalizer, fill=fill),
        info=info,
    )


def _take_input(arrays: Arrays, rows):
    x = take(arrays.x, rows)
    if arrays.spec.input_dtype == "float32" and isinstance(x, np.ndarray):
        return x.astype(np.float32, copy=False)
    if arrays.spec.table:
        return {**x, "features": x["features"].astype(np.float32, copy=False)}
    return x


def _text_splits(arrays: Arrays, rows, spec, info: dict) -> Splits:
    train, val, test = (take(arrays.x, r) for r in rows)
    y = [arrays.y[r] for r in rows]
    info |= {"vocabulary_size": len(spec.text["vocabulary"])}
    return Splits(train, y[0], val, y[1], test, y[2], spec=spec, info=info)


def fit_text(texts: np.ndarray, cfg) -> dict:
    """The vocabulary of the training texts: Keras' TextVectorization adapted on them (its
    own lower-casing, punctuation stripping and splitting), keeping the `max_tokens`
    most frequent words. The model's vectorisation layer is rebuilt from this list."""
    import keras  # loads TensorFlow: only a text source gets here

    layer = keras.layers.TextVectorization(max_tokens=cfg.max_tokens)
    streamed = hasattr(texts, "element_spec")  # a tf.data stream of a file too large to hold
    layer.adapt(texts if streamed else np.asarray(texts, dtype=object).astype(str))
    # The first two entries, padding "" and "[UNK]", come back with the layer itself.
    vocabulary = [str(w) for w in layer.get_vocabulary()[2:]]
    settings = ("max_tokens", "sequence_length", "embedding_dim")
    return {**{k: getattr(cfg, k) for k in settings}, "vocabulary": vocabulary, "column": None}


def fit_vocabularies(x_train: dict, categorical: dict) -> dict:
    """Each category column's values in the training split, sorted: what its lookup layer
    knows (anything else is out of vocabulary)."""
    return {
        name: {**kind, "vocabulary": sorted(np.unique(x_train[name]).tolist())}
        for name, kind in categorical.items()
    }


def fit_fill(x_train: np.ndarray, how: str) -> dict | None:
    """The value filling each input's gaps (NaN), fitted on the training split with
    scikit-learn's SimpleImputer: the training mean (0 for an input never seen), or zero.
    None when no gaps are allowed (`how` "none": the source refused them already)."""
    if how == "none":
        return None
    strategy = {"mean": "mean", "zero": "constant"}[how]
    imputer = SimpleImputer(strategy=strategy, fill_value=0.0, keep_empty_features=True)
    values = imputer.fit(_flat(x_train)).statistics_.astype(np.float64)
    return {"how": how, "values": values.reshape(x_train.shape[1:]).tolist()}


def fit_normalizer(x_train: np.ndarray, how: str) -> dict | None:
    """The scaling of `how`, fitted on the training split, as the `mean` and `variance` per
    input value that keras.layers.Normalization takes: (x - mean) / sqrt(variance) is
    scikit-learn's StandardScaler (mean, variance) or MinMaxScaler (minimum, range
    squared). A value constant in training is only centred, as scikit-learn does."""
    if how == "none":
        return None
    return keras_statistics(SCALERS[how]().fit(_flat(x_train)), how, x_train.shape[1:])


def keras_statistics(scaler, how: str, shape) -> dict:
    """A fitted scikit-learn scaler as Normalization's mean and variance of `shape`."""
    if how == "standard":
        centre, spread = scaler.mean_, scaler.scale_
    else:  # x' = x * scale_ + min_, with scale_ = 1 / range (1 where the range is 0)
        centre, spread = scaler.data_min_, 1.0 / scaler.scale_
    return {
        "how": how,
        "mean": centre.reshape(shape).tolist(),
        "variance": (spread**2).reshape(shape).tolist(),
    }


def split_rows(y: np.ndarray, cfg: SourceConfig, seed: int, stratified: bool):
    """(train, val, test) row indices of labels `y` by `cfg`'s fractions, seeded."""
    rows = np.arange(len(y))
    # The validation share is of what is left after the test split, hence the rescaling.
    val_of_rest = cfg.val_fraction / (1.0 - cfg.test_fraction)
    try:
        rest, test = hold_out(rows, y, cfg.test_fraction, seed, stratified)
        train, val = hold_out(rest, y, val_of_rest, seed, stratified)
    except ValueError as err:  # too few samples, or a class too small to stratify
        raise _split_error(y, cfg, stratified, err) from None
    return train, val, test


def hold_out(rows: np.ndarray, y: np.ndarray, fraction: float, seed: int, stratified: bool):
    """(kept, held out) `rows`: a seeded `fraction` of them held out, with each class's
    share of `y` kept in both when `stratified`; ValueError when a class is too small."""
    by = y[rows] if stratified else None
    return train_test_split(rows, test_size=fraction, random_state=seed, stratify=by)


def _split_error(y: np.ndarray, cfg: SourceConfig, stratified: bool, err: ValueError):
    n, reason = len(y), str(err).split("\n")[0]
    fractions = f"val_fraction={cfg.val_fraction:g}, test_fraction={cfg.test_fraction:g}"
    if not stratified:
        return ConfigError(
            "data.val_fraction",
            f"cannot split {n} samples into train/val/test with {fractions}: {reason}",
            "more samples, or fractions that leave every split at least one sample",
        )
    counts = np.bincount(y)
    k = len(counts)
    return ConfigError(
        "data.val_fraction",
        f"cannot split {n} samples of {k} classes (the smallest has {counts.min()}) into "
        f"train/val/test stratified by class with {fractions}: {reason}",
        f"at least 3 samples per class and fractions giving every split at least {k} samples "
        f"(here each fraction >= {k / n:.2g})",
    )


def apply_normaliser(x: np.ndarray, normaliser: dict | None) -> np.ndarray:
    """Scale inputs with the `normaliser.json` (x' = x * weight + bias per flattened value)
    that runs logged before the scaling moved into the model; None leaves them as they are."""
    if normaliser is None:
        return x.astype(np.float32)
    flat = _flat(x) * np.asarray(normaliser["weight"]) + np.asarray(normaliser["bias"])
    return flat.reshape(x.shape).astype(np.float32)


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)


def _summary(normalizer: dict | None) -> dict:
    """The fitted statistics' range over the input values, as plain floats for logging."""
    if normalizer is None:
        return {}
    centre = np.asarray(normalizer["mean"])
    spread = np.sqrt(np.asarray(normalizer["variance"]))
    if normalizer["how"] == "standard":
        stats = {"mean": centre, "std": spread}
    else:
        stats = {"min": centre, "max": centre + spread}
    summary = {}
    for name, values in stats.items():
        summary[f"train_{name}_lo"] = float(np.min(values))
        summary[f"train_{name}_hi"] = float(np.max(values))
    return summary
