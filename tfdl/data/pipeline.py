"""The one place arrays become tf.data pipelines: model.fit and evaluate consume only these."""

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
    if isinstance(x, dict) and splits.spec.categorical:  # a table: its numbers, its categories
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
