"""A training split held in memory (`train.input: auto`, tfdl.resident): model.fit gathers
its batches inside the compiled call instead of reading tf.data, and must train exactly as
tf.data feeds it, one pass per epoch (tests/test_train.py), each epoch's order drawn from
the seed and the epoch, so a resumed run sees the order an uninterrupted one does."""

import keras
import numpy as np
import pandas as pd
import pytest

from tfdl import resident
from tfdl.config import validate
from tfdl.prepared import prepare

from .conftest import TINY


def prepared(input_="auto", data=None, **train):
    train = {**TINY["train"], "input": input_, **train}
    return prepare(validate({**TINY, "data": data or TINY["data"], "train": train}))


def table(tmp_path):
    """A CSV with a category column, held in memory: the model takes a dict of inputs."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=300), "colour": rng.choice(["red", "blue"], 300)})
    frame["label"] = ((frame["colour"] == "red") ^ (frame["a"] > 1)).astype(int)
    frame.to_csv(tmp_path / "t.csv", index=False)
    return {"source": "csv", "path": str(tmp_path / "t.csv"), "target": "label"} | {
        "categorical": ["colour"]
    }


def trained(p, epochs=3):
    from tfdl.training import build, fit

    model = build(p)
    history, _ = fit(model, p, epochs=epochs)
    return model, history.history


@pytest.mark.parametrize(
    "case",
    ["sparse labels", "one-hot labels", "XLA", "a table's dict of inputs"],
)
def test_whole_split_batches_train_as_tf_data_feeds_them(case, tmp_path):
    # One batch per epoch holds the whole split, so the order within it cannot matter: the
    # two inputs must give the same losses, metrics and weights.
    train = {"batch_size": 4096, "optimizer": {"learning_rate": 0.05}}
    data = None
    if case == "one-hot labels":
        train["loss"] = "categorical_crossentropy"
    if case == "XLA":
        train["jit_compile"] = True
    if case == "a table's dict of inputs":
        data = table(tmp_path)
    held, fed = prepared("auto", data, **train), prepared("tf_data", data, **train)
    assert resident.resident_split(held) is not None and resident.resident_split(fed) is None
    (a, ha), (b, hb) = trained(held), trained(fed)
    for key in held.logged_names:
        np.testing.assert_allclose(ha[key], hb[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert ha["loss"][-1] < ha["loss"][0]  # it learned
    for x, y in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
    # The train function was the run's alone: the model answers as Keras made it.
    assert a.train_function is None and "get_metrics_result" not in vars(a)
    assert a.evaluate(held.dataset("test"), return_dict=True, verbose=0)["loss"] > 0


def test_each_epochs_order_is_a_permutation_drawn_from_the_seed_and_the_epoch():
    def orders(seed):
        split = resident.Resident(np.zeros((50, 2)), np.arange(50), batch_size=8, seed=seed)
        drawn = []
        for epoch in (0, 1, 0):
            split.on_epoch_begin(epoch)
            drawn.append(split.order.numpy())
        return drawn

    first, second, again = orders(7)
    assert sorted(first) == sorted(second) == list(range(50))
    assert not np.array_equal(first, second)  # reshuffled every epoch
    assert np.array_equal(first, again)  # from (seed, epoch) alone
    rerun = orders(7)  # a new split object: the same orders
    assert all(np.array_equal(x, y) for x, y in zip(rerun, [first, second, again], strict=True))
    assert not np.array_equal(orders(8)[0], first)


class BatchOrder(keras.layers.Layer):
    """Passes its input on; in training, a checksum of the epoch's batches in their order:
    the sum over batches of (batch number x the batch's feature sum)."""

    def build(self, shape):
        self.batches = self.add_weight(shape=(), initializer="zeros", trainable=False)
        self.checksum = self.add_weight(shape=(), initializer="zeros", trainable=False)

    def call(self, x, training=False):
        if training:
            self.batches.assign_add(1.0)
            self.checksum.assign_add(self.batches * keras.ops.sum(x))
        return x


class EpochOrders(keras.callbacks.Callback):
    def __init__(self, layer):
        super().__init__()
        self.layer, self.seen = layer, {}

    def on_epoch_end(self, epoch, logs=None):
        self.seen[epoch] = float(self.layer.checksum.numpy())
        self.layer.batches.assign(0.0)
        self.layer.checksum.assign(0.0)


def epoch_orders(p, epochs, initial_epoch=0):
    from tfdl.compile import compile_model
    from tfdl.training import build, fit

    layer = BatchOrder()
    model = compile_model(keras.Sequential([keras.Input((64,)), layer, build(p)]), p)
    orders = EpochOrders(layer)
    fit(model, p, callbacks=[orders], epochs=epochs, initial_epoch=initial_epoch)
    return orders.seen


@pytest.mark.parametrize("input_", ["auto", "tf_data"])
def test_a_resumed_run_sees_the_epochs_in_the_uninterrupted_runs_order(input_):
    p = prepared(input_, steps_per_execution=3)  # 20 steps: the last call of an epoch is short
    whole = epoch_orders(p, 4)
    resumed = epoch_orders(p, 4, initial_epoch=2)  # what a resume from epoch 2's backup runs
    assert len(set(whole.values())) == 4  # every epoch its own order
    if input_ == "auto":
        assert [resumed[e] for e in (2, 3)] == pytest.approx([whole[2], whole[3]], rel=1e-6)
    else:  # tf.data's shuffle starts its sequence again in a new process: epochs 0 and 1
        assert [resumed[e] for e in (2, 3)] == pytest.approx([whole[0], whole[1]], rel=1e-6)


def test_fit_reads_tf_data_where_the_split_is_not_held(monkeypatch):
    assert resident.resident_split(prepared("auto")) is not None
    assert resident.resident_split(prepared("tf_data")) is None
    assert resident.resident_split(prepared("auto", distribution="mirrored")) is None
    monkeypatch.setattr(resident, "MAX_BYTES", 1000)  # digits' split is 1257 x 64 x 4 bytes
    assert resident.resident_split(prepared("auto")) is None


def test_a_streamed_source_is_read_through_tf_data(tmp_path):
    data = table(tmp_path) | {"streaming": "on"}
    p = prepared("auto", data)
    assert p.spec.stream and resident.resident_split(p) is None


@pytest.mark.parametrize("input_", ["auto", "tf_data"])
def test_fit_traces_the_train_step_once_for_each_batch_shape(input_):
    # Keras leaves the optimizer's slots to the first step, and tf.function traces again a
    # function whose trace made variables: the step's most costly trace would be made twice.
    from tfdl.training import build, fit

    p = prepared(input_)
    model = build(p)
    traced, step = [], model.train_step

    def counted(data):
        traced.append(keras.tree.flatten(data[0])[0].shape[0])
        return step(data)

    model.train_step = counted
    fit(model, p, epochs=3)
    rows = len(p.splits.y_train)
    # held: the whole batches' shape and the partial last one's; tf.data: any batch size
    assert traced == ([64, rows % 64] if input_ == "auto" else [None])
    assert rows % 64 and model.optimizer.iterations.numpy() == 3 * -(-rows // 64)
