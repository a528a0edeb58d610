"""Empty cells in a table: one line naming where they are, or filled inside the model with
what the training split says (scikit-learn's SimpleImputer as a Keras layer)."""

import numpy as np
import pandas as pd
import pytest
from sklearn.impute import SimpleImputer

import tfdl
from tfdl.cli import main
from tfdl.config import validate
from tfdl.data.split import load_splits
from tfdl.errors import ConfigError

from .conftest import TINY


def table(tmp_path, gaps=((3, "b"), (17, "a"), (30, "b"))) -> str:
    """60 rows, two numeric features and a label that follows the first; some cells empty."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=60), "b": rng.integers(0, 9, 60).astype(float)})
    frame["label"] = (frame["a"] > 0).astype(int)
    for row, column in gaps:
        frame.loc[row, column] = np.nan
    path = tmp_path / "gaps.csv"
    frame.to_csv(path, index=False)
    return str(path)


def data(path, **fields):
    return {"source": "csv", "path": path, "target": "label", **fields}


def test_empty_cells_are_one_line_naming_the_first_one(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_splits(validate({**TINY, "data": data(table(tmp_path))}).data, 0)
    line = str(err.value)
    assert line.startswith("error: data.path: missing values in ")
    assert "column 'b', line 5 (2 more)" in line and "data.fill_missing: mean or zero" in line


def test_a_missing_target_is_refused_even_with_filling(tmp_path):
    path = table(tmp_path, gaps=((8, "label"),))
    with pytest.raises(ConfigError) as err:
        load_splits(validate({**TINY, "data": data(path, fill_missing="mean")}).data, 0)
    assert err.value.field == "data.target" and "line 10" in str(err.value)


@pytest.mark.parametrize("how", ["mean", "zero"])
def test_the_fill_is_fitted_on_the_training_split_only(how, tmp_path):
    s = load_splits(validate({**TINY, "data": data(table(tmp_path), fill_missing=how)}).data, 0)
    assert np.isnan(np.concatenate([s.x_train, s.x_val, s.x_test])).sum() == 3  # kept raw
    strategy = {"mean": "mean", "zero": "constant"}[how]
    twin = SimpleImputer(strategy=strategy, fill_value=0.0).fit(s.x_train)
    np.testing.assert_allclose(s.spec.fill["values"], twin.statistics_.astype(float), rtol=1e-6)
    if how == "mean":  # not the mean over all rows: validation and test stay unseen
        everything = np.concatenate([s.x_train, s.x_val, s.x_test])
        assert not np.allclose(s.spec.fill["values"], np.nanmean(everything, axis=0))


def test_the_fill_layer_is_simple_imputer_and_comes_before_the_scaling(tmp_path):
    import keras

    from tfdl.models import build_model

    cfg = validate({**TINY, "data": data(table(tmp_path), fill_missing="mean")})
    s = load_splits(cfg.data, 0)
    model = build_model(cfg.model, s.spec)
    assert [layer.name for layer in model.layers[1:3]] == ["fill_missing", "normalize"]
    rows = np.concatenate([s.x_train, s.x_val, s.x_test]).astype("float32")
    filled = np.asarray(model.get_layer("fill_missing")(rows))
    twin = SimpleImputer(strategy="mean").fit(s.x_train)
    np.testing.assert_allclose(filled, twin.transform(rows), rtol=1e-6)
    again = keras.models.clone_model(model)  # rebuilt from its config
    np.testing.assert_allclose(np.asarray(again.get_layer("fill_missing")(rows)), filled)


def test_a_run_on_a_table_with_gaps_serves_rows_with_gaps(store, tmp_path, capsys):
    import mlflow

    path = table(tmp_path)
    pipeline = {**TINY, "data": data(path, fill_missing="mean")}
    result = tfdl.train(pipeline)
    assert np.isfinite(result.history["loss"]).all()
    model = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/model")
    row = np.array([[np.nan, 4.0], [1.5, np.nan]], dtype="float32")
    served = np.asarray(model.predict(row))
    assert np.isfinite(served).all()
    s = load_splits(validate(pipeline).data, 42)
    filled = np.where(np.isnan(row), s.spec.fill["values"], row).astype("float32")
    np.testing.assert_allclose(served, result.model.predict(filled, verbose=0), rtol=1e-5)
    rows = tmp_path / "rows.csv"
    pd.DataFrame(row, columns=["a", "b"]).to_csv(rows, index=False)
    out = tmp_path / "predicted.csv"
    args = ["predict", "--run-id", result.run_id, "--input", str(rows), "--output", str(out)]
    assert main(args) == 0
    np.testing.assert_allclose(pd.read_csv(out)["p_1"], served.reshape(-1), rtol=1e-5)
