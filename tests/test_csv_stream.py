"""CSV files too large to hold: checked and fitted chunk by chunk, streamed by tf.data.
A streamed file must give what the same file in memory gives: the split, the fitted
statistics, the batches; and its mistakes are found, in any chunk, before any run."""

import numpy as np
import pandas as pd
import pytest

import tfdl
from tfdl.config import validate
from tfdl.data import csv_stream
from tfdl.errors import ConfigError
from tfdl.prepared import prepare

from .conftest import TINY

N = 600


@pytest.fixture
def chunky(monkeypatch):
    """Small chunks, so a few hundred rows make several of them."""
    monkeypatch.setattr(csv_stream, "CHUNK_ROWS", 128)
    monkeypatch.setattr(csv_stream, "HEAD_ROWS", 50)


def write_table(path, n=N, gaps=True):
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(rng.normal(size=(n, 3)) * [1, 10, 100] + [0, 5, -50], columns=list("abc"))
    frame["colour"] = rng.choice(["red", "green", "blue"], n)
    frame["label"] = ((frame.a > 0) | (frame.colour == "red")).astype(int)
    if gaps:
        frame.loc[[3, 400, 555], "b"] = np.nan  # in the first chunk and in later ones
    frame.to_csv(path, index=False)
    return path


def prepared(path, streaming, **data):
    base = {"source": "csv", "path": str(path), "target": "label", "streaming": streaming}
    return prepare(validate({**TINY, "data": {**base, **data}}))


TABLE = {"categorical": ["colour"], "fill_missing": "mean"}


def test_a_streamed_file_splits_and_fits_as_the_file_in_memory(chunky, tmp_path):
    path = write_table(tmp_path / "t.csv")
    held, streamed = prepared(path, "off", **TABLE), prepared(path, "on", **TABLE)
    a, b = held.splits, streamed.splits
    assert b.spec.stream["kind"] == "csv" and b.x_train.dtype == np.int64  # row numbers
    assert a.spec.stream is None
    for split in ("train", "val", "test"):  # the same rows, each split in file order
        rows = getattr(b, f"x_{split}")
        assert list(rows) == sorted(rows)
        np.testing.assert_allclose(
            np.sort(getattr(a, f"x_{split}")["features"][:, 0]),
            np.sort(pd.read_csv(path).loc[rows, "a"].to_numpy()),
            rtol=1e-6,
        )
    for key in ("mean", "variance"):
        np.testing.assert_allclose(a.spec.normalizer[key], b.spec.normalizer[key], rtol=1e-6)
    # float32 rows there, the float64 parse here: equal to float32 precision.
    np.testing.assert_allclose(a.spec.fill["values"], b.spec.fill["values"], rtol=1e-5)
    assert a.spec.categorical == b.spec.categorical
    # The batches hold the same rows: the test split, in order, through the model inputs.
    x_a = np.concatenate([x["features"] for x, _ in held.dataset("test")])
    x_b = np.concatenate([x["features"] for x, _ in streamed.dataset("test")])
    order = np.argsort(a.x_test["features"][:, 0])
    np.testing.assert_allclose(np.sort(x_b[:, 0]), x_a[order, 0], rtol=1e-6)


@pytest.mark.parametrize("cache", ["none", "memory", "disk"])
def test_each_epoch_reads_every_training_row_once(chunky, tmp_path, cache):
    path = write_table(tmp_path / "t.csv", gaps=False)
    p = prepared(path, "on", cache=cache, categorical=["colour"])
    epochs, train = [], p.dataset("train")  # one dataset, two passes: as fit runs epochs
    for _ in range(2):
        firsts = np.concatenate([x["features"][:, 0] for x, _ in train])
        epochs.append(firsts)
    want = np.sort(pd.read_csv(tmp_path / "t.csv").loc[p.splits.x_train, "a"].to_numpy())
    for firsts in epochs:
        np.testing.assert_allclose(np.sort(firsts), want, rtol=1e-6)
    assert not np.array_equal(epochs[0], epochs[1])  # shuffled anew


def test_streaming_auto_follows_the_file_size(tmp_path):
    path = write_table(tmp_path / "t.csv", gaps=False)
    size_mb = path.stat().st_size / 2**20
    small, large = (
        prepared(path, "auto", stream_above_mb=size_mb * f, categorical=["colour"])
        for f in (0.5, 2)
    )
    assert small.spec.stream is not None and large.spec.stream is None


def test_mistakes_in_a_later_chunk_are_found_before_any_run(chunky, tmp_path):
    path = write_table(tmp_path / "t.csv", gaps=False)
    frame = pd.read_csv(path)
    frame.loc[450, "c"] = np.nan
    frame.to_csv(path, index=False)
    with pytest.raises(ConfigError) as err:
        prepared(path, "on", categorical=["colour"])
    assert "column 'c', line 452" in str(err.value) and "fill_missing" in str(err.value)
    frame.loc[450, "c"] = 1.0
    frame["c"] = frame["c"].astype(object)
    frame.loc[300, "c"] = "n/a"
    frame.to_csv(path, index=False)
    with pytest.raises(ConfigError) as err:
        prepared(path, "on")
    assert (
        err.value.field == "data.path" and "non-numeric" in str(err.value) and "c" in str(err.value)
    )


def test_a_streamed_text_column_and_a_run_that_serves_raw_rows(chunky, store, tmp_path):
    import mlflow

    rng = np.random.default_rng(1)
    words = np.array(["good", "great", "bad", "awful", "the", "film", "a"])
    texts = [" ".join(rng.choice(words, 5)) for _ in range(N)]
    label = [int(("good" in t or "great" in t) and "bad" not in t) for t in texts]
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"review": texts, "label": label}).to_csv(path, index=False)
    data = {"source": "csv", "path": str(path), "target": "label", "text": "review"}
    p = prepared(path, "on", text="review", sequence_length=5, max_tokens=20, embedding_dim=8)
    assert p.spec.input_dtype == "string" and set(p.spec.text["vocabulary"]) == set(words)
    run = tfdl.train(
        {
            **TINY,
            "data": {**data, "streaming": "on", "sequence_length": 5, "embedding_dim": 8},
            "model": {"arch": "deep_mlp", "units": [16]},
            "train": {**TINY["train"], "epochs": 10, "batch_size": 32},
        }
    )
    assert run.test_metrics["accuracy"] > 0.75
    served = mlflow.pyfunc.load_model(f"runs:/{run.run_id}/model")
    out = served.predict(np.array(["great film", "awful film"], dtype=object))
    assert out[0, 0] > 0.5 > out[1, 0]
