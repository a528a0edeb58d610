"""The one place arrays become tf.data pipelines: model.fit and evaluate consume only these."""

import numpy as np
import tensorflow as tf

from tfdl.data.spec import SEQUENCE_TASKS


def make_dataset(
    x: np.ndarray | dict[str, np.ndarray],
    y: np.ndarray,
    *,
    batch_size: int,
    training: bool,
    seed: int,
    num_classes: int | None = None,
) -> tf.data.Dataset:
    """from_tensor_slices -> (one-hot) -> cache -> shuffle (training only) -> batch -> prefetch.

    The cache sits before the shuffle: caching after it would freeze the first epoch's
    order, and every later epoch would see the same batches. `num_classes` one-hot encodes
    the labels (for categorical cross-entropy).
    """
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if num_classes:
        ds = ds.map(
            lambda a, b: (a, tf.one_hot(b, num_classes)), num_parallel_calls=tf.data.AUTOTUNE
        )
    ds = ds.cache()
    if training:
        ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def labels_for(y: np.ndarray, task: str) -> np.ndarray:
    """Integer ids for classes and tokens; a float column (n, 1) for binary and regression."""
    if task in ("multiclass", *SEQUENCE_TASKS):
        return y.astype("int64")
    return y.astype("float32").reshape(-1, 1)


def make_datasets(splits, *, batch_size: int, seed: int, one_hot: bool = False):
    """Train, validation and test datasets from a Splits."""
    task = splits.spec.task
    classes = splits.spec.num_classes if one_hot else None

    def ds(x, y, training):
        return make_dataset(
            x.astype("float32") if splits.spec.input_dtype == "float32" else x,  # dict: tokens
            labels_for(y, task),
            batch_size=batch_size,
            training=training,
            seed=seed,
            num_classes=classes,
        )

    return (
        ds(splits.x_train, splits.y_train, True),
        ds(splits.x_val, splits.y_val, False),
        ds(splits.x_test, splits.y_test, False),
    )
