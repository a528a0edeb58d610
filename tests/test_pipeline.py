"""The tf.data pipelines: batches, shuffling in training only, labels shaped for the loss."""

import numpy as np

from tfdl.data.pipeline import make_dataset, split_dataset
from tfdl.data.spec import DataSpec, Splits


def order(ds):
    return np.concatenate([y.numpy().ravel() for _, y in ds])


def test_training_reshuffles_every_epoch_and_evaluation_keeps_order():
    x = np.arange(100, dtype="float32").reshape(-1, 1)
    y = np.arange(100)
    train = make_dataset(x, y, batch_size=16, training=True, seed=3)
    first, second = order(train), order(train)
    assert sorted(first) == list(range(100)) and not np.array_equal(first, second)
    again = make_dataset(x, y, batch_size=16, training=True, seed=3)
    assert np.array_equal(order(again), first)  # seeded: the same orders in a new run
    evaluate = make_dataset(x, y, batch_size=16, training=False, seed=3)
    assert np.array_equal(order(evaluate), y)
    assert [int(b.shape[0]) for b, _ in evaluate] == [16] * 6 + [4]


def test_a_repeated_stream_is_the_same_epochs_without_end():
    x = np.arange(100, dtype="float32").reshape(-1, 1)
    y = np.arange(100)
    stream = make_dataset(x, y, batch_size=16, training=True, seed=3, repeat=True)
    batches = [b.numpy() for _, b in stream.take(3 * 7)]  # 7 batches make one epoch
    assert [len(b) for b in batches] == [16] * 6 + [4] + [16] * 6 + [4] + [16] * 6 + [4]
    epochs = [np.concatenate(batches[i : i + 7]) for i in (0, 7, 14)]
    assert all(sorted(e) == list(range(100)) for e in epochs)  # each example once an epoch
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])
    # The epochs a fresh iterator starts with each time: the same shuffles, in the same order.
    once = make_dataset(x, y, batch_size=16, training=True, seed=3)
    assert np.array_equal(epochs[0], order(once)) and np.array_equal(epochs[1], order(once))


def test_labels_follow_the_loss():
    spec = DataSpec(input_shape=(3,), task="multiclass", num_classes=4)
    x, y = np.zeros((10, 3)), np.arange(10) % 4
    splits = Splits(x, y, x, y, x, y, spec)
    kw = dict(batch_size=5, training=True, seed=0)
    train = split_dataset(splits, x, y, one_hot=False, **kw)
    xb, yb = next(iter(train))
    assert xb.dtype.name == "float32" and yb.dtype.name == "int64" and yb.shape == (5,)
    one_hot = split_dataset(splits, x, y, one_hot=True, **kw)
    assert next(iter(one_hot))[1].shape == (5, 4)
    binary = Splits(x, y % 2, x, y % 2, x, y % 2, DataSpec((3,), "binary", 2))
    test = split_dataset(binary, x, y % 2, batch_size=10, training=False, seed=0, one_hot=False)
    yb = next(iter(test))[1]
    assert yb.shape == (10, 1) and yb.dtype.name == "float32"
