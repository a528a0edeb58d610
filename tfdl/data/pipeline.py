"""The one place arrays become tf.data pipelines: model.fit and evaluate consume only these."""

import atexit
import os
import shutil
import tempfile
import uuid

import numpy as np
import tensorflow as tf

from tfdl.data.spec import SEQUENCE_TASKS, take


def make_dataset(
    x: np.ndarray | dict[str, np.ndarray],
    y: np.ndarray,
    *,
    batch_size: int,
    training: bool,
    seed: int,
    num_classes: int | None = None,
    repeat: bool = False,
) -> tf.data.Dataset:
    """from_tensor_slices -> (one-hot) -> cache -> shuffle (training only) -> batch
    -> (repeat) -> prefetch.

    The cache sits before the shuffle: caching after it would freeze the first epoch's
    order, and every later epoch would see the same batches. `num_classes` one-hot encodes
    the labels (for categorical cross-entropy). `repeat` makes one endless stream of
    epochs, each reshuffled and ending in its own partial batch (the learning-rate sweep's
    steps, a benchmark's loop).
    """
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if num_classes:
        ds = ds.map(
            lambda a, b: (a, tf.one_hot(b, num_classes)), num_parallel_calls=tf.data.AUTOTUNE
        )
    ds = ds.cache()
    if training:
        ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    return (ds.repeat() if repeat else ds).prefetch(tf.data.AUTOTUNE)


def labels_for(y: np.ndarray, task: str) -> np.ndarray:
    """Integer ids for classes and tokens; a float column (n, 1) for binary and regression."""
    if task in ("multiclass", *SEQUENCE_TASKS):
        return y.astype("int64")
    return y.astype("float32").reshape(-1, 1)


def model_arrays(splits, x, y):
    """Rows of an in-memory split as the model takes them: features cast (a table's numbers
    to float32, else float32 unless token ids), labels shaped for the task."""
    if isinstance(x, dict) and splits.spec.table:  # a table: its numbers, its categories, text
        x = {**x, "features": x["features"].astype("float32")}
    elif splits.spec.input_dtype == "float32":  # else token ids
        x = x.astype("float32")
    return x, labels_for(y, splits.spec.task)


def split_dataset(
    splits, x, y, *, batch_size: int, training: bool, seed: int, one_hot: bool, repeat=False
):
    """One split of a Splits as a dataset: features cast, labels shaped for the task."""
    if splits.spec.stream:
        kw = dict(batch_size=batch_size, training=training, seed=seed, repeat=repeat)
        num_classes = splits.spec.num_classes if one_hot else None
        return streamed(splits.spec, x, labels_for(y, splits.spec.task), num_classes, **kw)
    return make_dataset(
        *model_arrays(splits, x, y),
        batch_size=batch_size,
        training=training,
        seed=seed,
        num_classes=splits.spec.num_classes if one_hot else None,
        repeat=repeat,
    )


def probe_batch(splits, size: int, one_hot: bool = False):
    """A fixed (x, y) batch of the training split, as the model sees it (gradient checks)."""
    rows = slice(0, size)
    x, y = take(splits.x_train, rows), splits.y_train[rows]
    ds = split_dataset(splits, x, y, batch_size=size, training=False, seed=0, one_hot=one_hot)
    return next(iter(ds))


# --- sources streamed from their files -------------------------------------------------------

SHUFFLE_BUFFER = 4096  # rows held for shuffling where the whole split cannot be
STREAM_PREFETCH = 2  # batches of a streamed source read ahead of the model


def streamed(spec, rows, y, num_classes, *, batch_size, training, seed, repeat):
    """A split of a streamed source: its rows read from the files as batches are drawn,
    then (cached) -> (shuffled) -> batched -> prefetched. Images are decoded in parallel;
    a cache keeps what was read after the first pass, in memory or in a file on disk."""
    stream, cache = spec.stream, spec.stream.get("cache", "none")
    shuffled = training and cache == "none" and stream["kind"] == "images"
    if stream["kind"] == "images":
        # File names are small: all of them are shuffled before any image is read.
        ds = tf.data.Dataset.from_tensor_slices((np.asarray(rows, dtype=str), y))
        if shuffled:
            ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
        ds = ds.map(
            lambda path, label: (read_image(path, stream), label),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    else:
        ds = tf.data.Dataset.zip((csv_rows(spec, rows), tf.data.Dataset.from_tensor_slices(y)))
    if num_classes:
        ds = ds.map(lambda x, label: (x, tf.one_hot(label, num_classes)))
    if cache != "none":
        ds = ds.cache() if cache == "memory" else ds.cache(cache_file())
    if training and not shuffled:  # the file's order, shuffled within a buffer
        ds = ds.shuffle(min(len(y), SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    # A few batches ahead, not AUTOTUNE's: its buffer grows while the reader outruns the
    # model, up to a whole split of decoded images (measured: +165 MiB on 10k pictures).
    return (ds.repeat() if repeat else ds).prefetch(STREAM_PREFETCH)


def read_image(path, stream: dict):
    """One image file as float32 pixels 0..255 of `image_size`: decoded (bmp, gif, jpeg,
    png; a GIF's first frame) and resized bilinearly, as image_dataset_from_directory does."""
    image = tf.io.decode_image(
        tf.io.read_file(path), channels=stream["channels"], expand_animations=False
    )
    image = tf.image.resize(image, stream["image_size"])
    return tf.ensure_shape(image, (*stream["image_size"], stream["channels"]))


DEFAULTS = {"float32": np.nan, "int64": np.int64(0), "string": ""}  # an empty cell's value


def csv_rows(spec, rows):
    """The given rows (in file order) of a streamed CSV as model inputs, parsed by
    tf.data's CSV reader: the file is read from the start each pass, and rows of other
    splits are skipped by their numbers."""
    columns = spec.stream["columns"]
    defaults = [tf.constant([DEFAULTS[dtype]], dtype=dtype) for _, _, dtype, _ in columns]
    lines = tf.data.experimental.CsvDataset(
        spec.stream["path"], defaults, header=True, select_cols=[c[1] for c in columns]
    )
    member = np.zeros(spec.stream["rows"], dtype=bool)
    member[np.asarray(rows, dtype=np.int64)] = True
    member = tf.constant(member)
    names = [c[0] for c in columns]
    position = {name: names.index(name) for name in names}

    def inputs(_, values):
        if spec.input_dtype == "string":  # the text alone
            return values[position[spec.feature_names[0]]]
        numbers = tf.stack([values[position[n]] for n in spec.feature_names], axis=-1)
        if not spec.table:
            return numbers
        x = {"features": numbers}
        for name in names:
            if name not in spec.feature_names:
                x[name] = values[position[name]]
        return x

    ds = lines.enumerate().filter(lambda i, _: member[i])
    # The count is known: Keras then sizes the epoch (and its progress bar) from the start.
    ds = ds.apply(tf.data.experimental.assert_cardinality(len(rows)))
    return ds.map(inputs, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


_cache_dir: list[str] = []


def cache_file() -> str:
    """A new tf.data cache file in this process's temporary folder (removed at exit)."""
    if not _cache_dir:
        _cache_dir.append(tempfile.mkdtemp(prefix="tfdl-cache-"))
        atexit.register(shutil.rmtree, _cache_dir[0], True)
    return os.path.join(_cache_dir[0], uuid.uuid4().hex)


def inputs_of(spec, x):
    """Model inputs for a few rows `x` of a split (a sample, a check): the rows
    themselves, or for a streamed source what they name, read from the files."""
    if not spec.stream:
        return x
    if spec.stream["kind"] == "csv":
        from tfdl.data.csv_stream import read_rows

        return read_rows(spec, x)
    return np.stack([read_image(p, spec.stream).numpy() for p in np.asarray(x, dtype=str)])


def predict_rows(model, spec, x, batch_size: int = 256) -> np.ndarray:
    """The model's outputs for rows `x` of a streamed split, read batch by batch."""
    y = np.zeros(len(x), dtype=np.int64)  # unused: the stream pairs inputs with labels
    ds = streamed(
        spec, x, y, None, batch_size=batch_size, training=False, seed=0, repeat=False
    ).map(lambda inputs, _: inputs)
    # The model called batch by batch: model.predict held about three times as much
    # memory on the same stream (measured: +348 MiB against +106 MiB on 10k pictures).
    return np.concatenate([np.asarray(model(batch, training=False)) for batch in ds])
