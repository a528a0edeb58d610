"""Text as input: a folder of .txt files per class, or a text column in a CSV. Keras'
TextVectorization, adapted on the training split, and an embedding sit inside the model,
so the logged model takes strings."""

import numpy as np
import pandas as pd
import pytest

import tfdl
from tfdl.config import validate
from tfdl.data.split import load_splits
from tfdl.errors import ConfigError
from tfdl.models import build_model
from tfdl.prepared import prepare

from .conftest import TINY, run_tfdl

GOOD = "great wonderful superb lovely enjoyable brilliant".split()
BAD = "awful boring terrible dull bad worst".split()
FILLER = "the movie was a plot actor and it film".split()


def reviews(n=120, seed=0):
    """Texts whose sentiment words decide the label, among neutral ones."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = [*rng.choice(FILLER, 6), *rng.choice(GOOD if label else BAD, 2)]
        rng.shuffle(words)
        rows.append((" ".join(words), "pos" if label else "neg"))
    return rows


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "reviews"
    for i, (text, label) in enumerate(reviews()):
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / f"{i:03d}.txt").write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def table(tmp_path):
    frame = pd.DataFrame(reviews(), columns=["review", "sentiment"])
    frame["stars"] = np.where(frame["sentiment"] == "pos", 4.0, 2.0)  # a number beside it
    path = tmp_path / "reviews.csv"
    frame.to_csv(path, index=False)
    return path


TEXT = {"sequence_length": 12, "max_tokens": 50, "embedding_dim": 8}


def pipeline(data, arch="lstm", **model):
    return {**TINY, "data": {**TEXT, **data}, "model": {"arch": arch, **model}}


def test_a_text_folder_is_one_string_per_file_labelled_by_its_folder(folder):
    s = load_splits(validate(pipeline({"source": "text_folder", "path": str(folder)})).data, 0)
    assert s.spec.class_names == ("neg", "pos") and s.spec.task == "binary"
    assert s.spec.input_dtype == "string" and s.spec.input_shape == ()
    assert s.x_train.dtype == object and isinstance(s.x_train[0], str)
    for text, label in zip(s.x_test, s.y_test, strict=True):
        assert any(w in text.split() for w in (GOOD if label else BAD))
    assert len(s.x_train) + len(s.x_val) + len(s.x_test) == 120


def test_the_vocabulary_is_keras_own_adapted_on_the_training_split_only(folder):
    import keras

    s = load_splits(validate(pipeline({"source": "text_folder", "path": str(folder)})).data, 0)
    twin = keras.layers.TextVectorization(max_tokens=50)
    twin.adapt(s.x_train)
    assert s.spec.text["vocabulary"] == twin.get_vocabulary()[2:]
    model = build_model(
        validate(pipeline({"source": "text_folder", "path": str(folder)})).model, s.spec
    )
    ids = np.asarray(model.get_layer("text_words").layers[0](s.x_test[:4]))
    twin_ids = np.asarray(
        keras.layers.TextVectorization(
            vocabulary=twin.get_vocabulary()[2:], output_sequence_length=12
        )(s.x_test[:4])
    )
    np.testing.assert_array_equal(ids, twin_ids)


def test_a_file_that_is_not_utf8_is_named(folder):
    bad = folder / "neg" / "latin1.txt"
    bad.write_bytes("très mauvais".encode("latin-1"))
    with pytest.raises(ConfigError) as err:
        load_splits(validate(pipeline({"source": "text_folder", "path": str(folder)})).data, 0)
    assert err.value.field == "data.path" and "latin1.txt is not UTF-8" in str(err.value)


def test_a_csv_text_column_alone_is_a_text_input_and_beside_numbers_a_table(table):
    alone = pd.read_csv(table).drop(columns="stars")
    alone.to_csv(table.with_name("alone.csv"), index=False)
    data = {"source": "csv", "target": "sentiment", "text": "review"}
    s = load_splits(validate(pipeline({**data, "path": str(table.with_name("alone.csv"))})).data, 0)
    assert s.spec.input_dtype == "string" and s.spec.feature_names == ("review",)
    both = load_splits(validate(pipeline({**data, "path": str(table)})).data, 0)
    assert set(both.x_train) == {"features", "review"} and both.spec.feature_names == ("stars",)
    assert both.spec.text["column"] == "review" and both.spec.table


@pytest.mark.parametrize(
    "arch", ["lstm", "gru", "simple_rnn", "cnn1d", "transformer_encoder", "deep_mlp"]
)
def test_every_sequence_architecture_learns_from_text(folder, arch):
    import keras

    extra = {}
    if arch == "transformer_encoder":
        extra = {"d_model": 16, "num_heads": 2, "ff_dim": 16, "dropout": 0.0}
    if arch == "cnn1d":
        extra = {"filters": [16], "batch_norm": False, "dense_units": [16]}
    p = prepare(validate(pipeline({"source": "text_folder", "path": str(folder)}, arch, **extra)))
    from tfdl.training import build

    model = build(p)
    assert model.inputs[0].dtype == "string"
    x, y = p.probe(64)
    before = float(keras.losses.binary_crossentropy(y, model(x)).numpy().mean())
    model.fit(p.dataset("train"), epochs=20, verbose=0, shuffle=False)
    after = float(keras.losses.binary_crossentropy(y, model(x)).numpy().mean())
    assert after < 0.8 * before, (arch, before, after)


def test_a_run_serves_strings_unseen_words_included(store, table, tmp_path):
    import mlflow

    data = {"source": "csv", "path": str(table), "target": "sentiment", "text": "review"}
    frame = pd.read_csv(table).drop(columns="stars")
    frame.to_csv(table, index=False)
    run = tfdl.train({**pipeline(data, units=[16]), "train": {**TINY["train"], "epochs": 12}})
    assert run.test_metrics["accuracy"] > 0.8
    texts = np.array(["a superb lovely film", "awful dull plot", "zyxxy qwerty"], dtype=object)
    served = mlflow.pyfunc.load_model(f"runs:/{run.run_id}/model").predict(texts)
    np.testing.assert_allclose(served, run.model.predict(texts, verbose=0), rtol=1e-4)
    assert served[0, 0] > 0.5 > served[1, 0]
    (tmp_path / "new.txt").write_text("a superb lovely film")
    out = run_tfdl("predict", "--run-id", run.run_id, "--input", str(tmp_path / "new.txt"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1].startswith("pos,")
