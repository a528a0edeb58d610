"""The one place arrays become tf.data pipelines: model.fit and evaluate consume only these."""

import atexit
import shutil
import tempfile

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


def split_dataset(
    splits, x, y, *, batch_size: int, training: bool, seed: int, one_hot: bool, repeat=False
):
    """One split of a Splits as a dataset: features cast, labels shaped for the task."""
    if splits.spec.stream:
        kw = dict(batch_size=batch_size, training=training, seed=seed, repeat=repeat)
        num_classes = splits.spec.num_classes if one_hot else None
        y = labels_for(y, splits.spec.task)
        return image_stream(x, y, splits.spec.stream, num_classes=num_classes, **kw)
    if isinstance(x, dict) and splits.spec.table:  # a table: its numbers, its categories, text
        x = {**x, "features": x["features"].astype("float32")}
    elif splits.spec.input_dtype == "float32":  # else token ids
        x = x.astype("float32")
    return make_dataset(
        x,
        labels_for(y, splits.spec.task),
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


# --- images streamed from their files -----------------------------------------------------

SHUFFLE_BUFFER = 4096  # decoded images held for shuffling when a cache fixes their order


def read_image(path, stream: dict):
    """One image file as float32 pixels 0..255 of `image_size`: decoded (bmp, gif, jpeg,
    png; a GIF's first frame) and resized bilinearly, as image_dataset_from_directory does."""
    image = tf.io.decode_image(
        tf.io.read_file(path), channels=stream["channels"], expand_animations=False
    )
    image = tf.image.resize(image, stream["image_size"])
    return tf.ensure_shape(image, (*stream["image_size"], stream["channels"]))


def image_stream(paths, y, stream: dict, *, batch_size, training, seed, num_classes, repeat):
    """Files -> (shuffled) -> decoded in parallel -> (cached) -> batches -> prefetch.

    Without a cache the file names are shuffled (all of them: they are small) before any
    image is read, so only a few batches of pixels are ever in memory. A cache keeps the
    decoded images after the first pass, in memory or in a file on disk; the order is
    then shuffled after it, within `SHUFFLE_BUFFER` images.
    """
    ds = tf.data.Dataset.from_tensor_slices((np.asarray(paths, dtype=str), y))
    cache = stream.get("cache", "none")
    if training and cache == "none":
        ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)

    def decode(path, label):
        label = tf.one_hot(label, num_classes) if num_classes else label
        return read_image(path, stream), label

    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache != "none":
        ds = ds.cache() if cache == "memory" else ds.cache(cache_file())
        if training:
            ds = ds.shuffle(min(len(y), SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    return (ds.repeat() if repeat else ds).prefetch(tf.data.AUTOTUNE)


_cache_dir: list[str] = []


def cache_file() -> str:
    """A new tf.data cache file in this process's temporary folder (removed at exit)."""
    if not _cache_dir:
        _cache_dir.append(tempfile.mkdtemp(prefix="tfdl-cache-"))
        atexit.register(shutil.rmtree, _cache_dir[0], True)
    return tempfile.mktemp(dir=_cache_dir[0])


def inputs_of(spec, x):
    """Model inputs for the rows `x` of a split: the rows themselves, or for a streamed
    source the files they name, read (for a few rows: a sample, a chunk to predict)."""
    if not spec.stream:
        return x
    return np.stack([read_image(p, spec.stream).numpy() for p in np.asarray(x, dtype=str)])
