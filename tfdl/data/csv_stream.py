"""CSV files too large to hold: read by pandas a chunk at a time to check them and fit the
statistics, then streamed by tf.data's CSV reader each epoch (`tfdl.data.pipeline.csv_rows`).

A streamed file gives what the same file in memory gives: the same checks (a mistake in
any chunk is found before any run), the same seeded split, the same statistics fitted on
the training rows. Only one column is ever held whole: the target, which the split needs.
The splits hold row numbers, in file order, so that the reader's rows and the labels
line up.
"""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from tfdl.data.schema import Csv
from tfdl.data.sources import (
    CSV_ERRORS,
    _classification,
    _regression,
    category_kind,
    cells,
    check_features,
    check_finite,
    check_target_present,
    csv_error,
    read_csv,
    read_target,
    table_inputs,
    texts_of,
)
from tfdl.data.spec import DataSpec, Splits
from tfdl.data.split import SCALERS, _summary, fit_text, keras_statistics, split_rows
from tfdl.errors import ConfigError

# Rows pandas parses at a time: what preparing a streamed file holds at its peak (measured
# on 100k rows of 21 columns: +109 MiB at 100k rows a chunk, +33 MiB at 10k).
CHUNK_ROWS = 10_000
HEAD_ROWS = 1_000  # rows read first, to find the columns before the chunks
# Only an empty cell is a gap, as tf.data's reader sees it: "n/a" or "NA" in a numeric
# column would make the reader fail mid-epoch, so they are non-numeric values here.
READ = {"keep_default_na": False, "na_values": [""]}


def streams(cfg: Csv) -> bool:
    """Whether the file is streamed: `streaming: on`, or `auto` and above the threshold."""
    if cfg.streaming != "auto":
        return cfg.streaming == "on"
    try:
        return Path(cfg.path).stat().st_size > cfg.stream_above_mb * 2**20
    except OSError:
        return False  # read in memory, where the missing file is named


def chunks(path: str):
    """The file's frames of CHUNK_ROWS rows, each indexed by its row numbers."""
    try:
        yield from pd.read_csv(path, chunksize=CHUNK_ROWS, **READ)
    except CSV_ERRORS as err:
        raise csv_error(path, err) from None


def load_streamed(cfg: Csv, seed: int) -> Splits:
    head = read_csv(cfg.path, nrows=HEAD_ROWS, **READ)  # the file exists and parses
    features = list(check_features(head, cfg).columns)
    targets, integer, n = [], dict.fromkeys(cfg.categorical, True), 0
    for chunk in chunks(cfg.path):  # every chunk checked as the whole file is in memory
        _check(chunk, cfg)
        for name in cfg.categorical:
            integer[name] &= pd.api.types.is_integer_dtype(chunk[name])
        targets.append(chunk[cfg.target])
        n += len(chunk)
    y, task, names = read_target(pd.concat(targets, ignore_index=True), cfg)
    del targets
    shape = np.empty((0, len(features)))  # no rows: only the spec is wanted
    if task == "regression":
        base = _regression(shape, y, features)
    else:
        base = _classification(shape, y, names, features, task)
    stratified = task != "regression"
    rows = [np.sort(r).astype(np.int64) for r in split_rows(y, cfg, seed, stratified)]
    kinds = {c: category_kind("int64" if integer[c] else "string", cfg) for c in cfg.categorical}
    spec, info = _fit(cfg, base.spec, features, kinds, rows[0], n, list(head.columns))
    info |= {"n_train": len(rows[0]), "n_val": len(rows[1]), "n_test": len(rows[2])}
    info |= {"seed": int(seed), "streamed_rows": n}
    y = base.y
    return Splits(*(part for r in rows for part in (r, y[r])), spec=spec, info=info)


def _check(chunk: pd.DataFrame, cfg: Csv) -> None:
    numbers = check_features(chunk, cfg)
    check_finite(numbers.to_numpy(np.float64), numbers.columns, cfg)
    check_target_present(chunk[cfg.target], cfg)
    for name in cfg.categorical:
        if chunk[name].isna().any():
            raise ConfigError(
                "data.categorical",
                f"missing values in {cfg.path}, {cells(chunk[[name]])}",
                "a category in every row (an empty string counts as one)",
            )


def _fit(cfg: Csv, spec: DataSpec, features, kinds, train: np.ndarray, n: int, header):
    """The spec of the streamed rows, with the statistics fitted on the training rows: the
    gaps' fill, the scaling, each category's values, the text's vocabulary."""
    is_train = np.zeros(n, dtype=bool)
    is_train[train] = True

    def training_chunks():
        for chunk in chunks(cfg.path):
            yield chunk[is_train[chunk.index]]

    how = cfg.normalize if features else "none"
    sums, counts = np.zeros(len(features)), np.zeros(len(features))
    values = {name: set() for name in kinds}
    scaler = SCALERS[how]() if how != "none" else None
    gapless = cfg.fill_missing != "mean"  # the fill is known before the pass: scale now
    fill = np.zeros(len(features))
    for chunk in training_chunks():
        x = chunk[features].to_numpy(np.float32).astype(np.float64)
        sums += np.nansum(x, axis=0)
        counts += (~np.isnan(x)).sum(axis=0)
        for name, kind in kinds.items():
            column = chunk[name].astype(str) if kind["dtype"] == "string" else chunk[name]
            values[name].update(column.tolist())
        if scaler is not None and gapless and len(x):
            scaler.partial_fit(np.where(np.isnan(x), fill, x))
    if cfg.fill_missing == "mean":  # a column never filled in training gets 0
        fill = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        if scaler is not None:
            for chunk in training_chunks():
                x = chunk[features].to_numpy(np.float32).astype(np.float64)
                if len(x):
                    scaler.partial_fit(np.where(np.isnan(x), fill, x))
    categorical = {
        name: {**kind, "vocabulary": sorted(values[name])} for name, kind in kinds.items()
    }
    normalizer = keras_statistics(scaler, how, (len(features),)) if scaler else None
    fills = (
        None if cfg.fill_missing == "none" else {"how": cfg.fill_missing, "values": fill.tolist()}
    )
    text = _fit_text(cfg, training_chunks) if cfg.text else None
    columns = _columns(cfg, features, kinds, header)
    stream = {"kind": "csv", "path": str(Path(cfg.path).resolve()), "rows": n, "columns": columns}
    stream["cache"] = cfg.cache
    fitted = dict(normalizer=normalizer, fill=fills, categorical=categorical or None, stream=stream)
    info = {"normalize": how, **_summary(normalizer)}
    if cfg.text and not features and not kinds:  # the text column is the whole input
        info["vocabulary_size"] = len(text["vocabulary"])
        alone = dict(input_shape=(), feature_names=(cfg.text,), input_dtype="string")
        return replace(spec, **alone, text=text, stream=stream), info
    if text:
        text["column"] = cfg.text
    return replace(spec, text=text, **fitted), info


def _fit_text(cfg: Csv, training_chunks) -> dict:
    """The text column's vocabulary, adapted on the training rows as tf.data streams them
    from pandas' chunks, never all the texts at once."""
    import tensorflow as tf

    texts = tf.data.Dataset.from_generator(
        lambda: (texts_of(chunk[cfg.text]) for chunk in training_chunks()),
        output_signature=tf.TensorSpec((None,), tf.string),
    )
    return fit_text(texts, cfg)


def _columns(cfg: Csv, features, kinds, header: list[str]) -> list:
    """[name, column number, type, role] of each column the model reads, in file order
    (tf.data's reader takes its columns in that order)."""
    roles = [(f, "float32", "feature") for f in features]
    roles += [(c, kind["dtype"], "category") for c, kind in kinds.items()]
    roles += [(cfg.text, "string", "text")] if cfg.text else []
    return sorted(
        ([name, header.index(name), dtype, role] for name, dtype, role in roles), key=lambda c: c[1]
    )


def read_rows(spec: DataSpec, rows) -> object:
    """The model inputs of a few rows (by number) of a streamed file, in the given order."""
    rows = np.asarray(rows, dtype=np.int64)
    wanted = set(rows.tolist())
    frame = pd.read_csv(
        spec.stream["path"],
        skiprows=lambda i: i > 0 and i - 1 not in wanted,
        nrows=len(wanted),
        **READ,
    )
    frame.index = sorted(wanted)
    return table_inputs(frame.loc[rows], spec)
