"""Tables with category columns: looked up inside the model against the training split's
values (Keras' StringLookup / IntegerLookup), an unseen value in a slot of its own."""

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import OneHotEncoder

import tfdl
from tfdl.cli import main
from tfdl.config import validate
from tfdl.data.split import load_splits
from tfdl.errors import ConfigError

from .conftest import TINY


def table(tmp_path, n=90) -> str:
    """A label that depends on a colour (strings) and a size (integers) as much as on `a`."""
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "colour": rng.choice(["red", "green", "blue"], n),
            "size": rng.integers(1, 4, n),
        }
    )
    frame["label"] = ((frame["colour"] == "red") | (frame["size"] == 3)).astype(int)
    path = tmp_path / "shop.csv"
    frame.to_csv(path, index=False)
    return str(path)


def data(path, **fields):
    return {"source": "csv", "path": path, "target": "label", **fields}


CATEGORIES = {"categorical": ["colour", "size"]}


def test_each_category_column_is_an_input_with_the_training_split_s_values(tmp_path):
    s = load_splits(validate({**TINY, "data": data(table(tmp_path), **CATEGORIES)}).data, 0)
    assert set(s.x_train) == {"features", "colour", "size"}
    assert s.x_train["features"].shape[1:] == (1,) and s.spec.feature_names == ("a",)
    assert s.x_train["colour"].dtype == object and s.x_train["size"].dtype == np.int64
    colour, size = s.spec.categorical["colour"], s.spec.categorical["size"]
    assert colour == {
        "dtype": "string",
        "encoding": "one_hot",
        "vocabulary": sorted(set(s.x_train["colour"])),
    }
    assert size["dtype"] == "int64" and size["vocabulary"] == sorted(set(s.x_train["size"]))


def test_the_lookup_is_one_hot_encoding_with_a_slot_for_the_unseen(tmp_path):
    from tfdl.models import build_model

    cfg = validate({**TINY, "data": data(table(tmp_path), **CATEGORIES)})
    s = load_splits(cfg.data, 0)
    model = build_model(cfg.model, s.spec)
    seen = np.array(["blue", "red", "green"], dtype=object)
    values = np.array([*seen, "purple"], dtype=object)  # purple: never in training
    got = np.asarray(model.get_layer("lookup_0")(values))
    twin = OneHotEncoder(handle_unknown="ignore").fit(s.x_train["colour"].reshape(-1, 1))
    np.testing.assert_array_equal(got[:, 1:], twin.transform(values.reshape(-1, 1)).toarray())
    np.testing.assert_array_equal(got[:, 0], [0, 0, 0, 1])  # the unseen value's own slot


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"categorical": ["colour", "shape"]}, ["data.categorical", "no column 'shape'"]),
        ({"categorical": ["colour", "label"]}, ["data.categorical", "'label' is the target"]),
        ({"categorical": ["colour"]}, ["data.path", "non-numeric", "size", "data.categorical"]),
    ],
)
def test_category_mistakes_are_one_line(fields, words, tmp_path):
    path = table(tmp_path)
    frame = pd.read_csv(path)
    frame["size"] = frame["size"].map({1: "S", 2: "M", 3: "L"})  # text, not named categorical
    frame.to_csv(path, index=False)
    with pytest.raises(ConfigError) as err:
        load_splits(validate({**TINY, "data": data(path, **fields)}).data, 0)
    line = str(err.value)
    assert "\n" not in line and all(w in line for w in words), line


def test_a_run_on_a_table_with_categories_serves_unseen_values(store, tmp_path):
    import mlflow

    pipeline = {**TINY, "data": data(table(tmp_path), **CATEGORIES)}
    pipeline["train"] = {**TINY["train"], "epochs": 15, "batch_size": 16}
    result = tfdl.train(pipeline)
    assert result.test_metrics["accuracy"] > 0.75  # the categories carry the label
    rows = {
        "features": np.array([[0.0], [0.0], [0.0]], dtype="float32"),
        "colour": np.array(["red", "blue", "purple"], dtype=object),
        "size": np.array([1, 1, 7]),
    }
    model = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/model")
    served = np.asarray(model.predict(rows)).reshape(-1)
    np.testing.assert_allclose(served, result.model.predict(rows, verbose=0).reshape(-1), rtol=1e-5)
    assert served[0] > 0.5 > served[1]  # red passes, blue of size 1 does not
    csv = tmp_path / "new.csv"
    pd.DataFrame({"size": [1, 1, 7], "colour": rows["colour"], "a": [0.0] * 3}).to_csv(
        csv, index=False
    )
    out = tmp_path / "predicted.csv"
    assert (
        main(["predict", "--run-id", result.run_id, "--input", str(csv), "--output", str(out)]) == 0
    )
    np.testing.assert_allclose(pd.read_csv(out)["p_1"], served, rtol=1e-5)


def test_embedded_categories_are_a_learned_vector_per_value_and_one_for_the_unseen(tmp_path):
    import keras

    from tfdl.models import build_model

    fields = {**CATEGORIES, "category_encoding": "embedding", "category_embedding_dim": 3}
    cfg = validate({**TINY, "data": data(table(tmp_path), **fields)})
    s = load_splits(cfg.data, 0)
    assert s.spec.categorical["colour"]["encoding"] == "embedding"
    model = build_model(cfg.model, s.spec)
    colour = model.get_layer("lookup_0")
    table_ = colour.get_layer("lookup_0_embedding").get_weights()[0]
    assert table_.shape == (4, 3)  # blue, green, red and the unseen
    got = np.asarray(colour(np.array(["red", "purple", "orange"], dtype=object)))
    np.testing.assert_allclose(
        got[0], table_[1 + s.spec.categorical["colour"]["vocabulary"].index("red")]
    )
    np.testing.assert_allclose(got[1], table_[0])  # every unseen value shares slot 0
    np.testing.assert_allclose(got[2], table_[0])
    assert isinstance(colour.layers[0], keras.layers.StringLookup)
