"""Runs logged before models scaled their own inputs kept the scaling beside the model
(normaliser.json): tfdl predict still applies it to them, and only to them."""

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tfdl import train
from tfdl.cli import main
from tfdl.config import validate
from tfdl.data.split import load_splits

from .conftest import TINY

WEIGHT, BIAS = 0.0625, -0.5  # pixels 0-16 to -0.5-0.5


def predicted(run_id, rows, tmp_path) -> np.ndarray:
    np.save(tmp_path / "rows.npy", rows)
    out = tmp_path / "predictions.csv"
    args = ["predict", "--run-id", run_id, "--input", str(tmp_path / "rows.npy")]
    assert main([*args, "--output", str(out)]) == 0
    return pd.read_csv(out)[[f"p_{c}" for c in range(10)]].to_numpy()


@pytest.mark.parametrize("scales_itself", [False, True])
def test_predict_applies_a_logged_normaliser_unless_the_model_scales_itself(
    scales_itself, store, tmp_path, capsys
):
    data = {"source": "digits"} if scales_itself else {"source": "digits", "normalize": "none"}
    cfg = validate({**TINY, "data": data})
    run = train(cfg)
    MlflowClient().log_dict(
        run.run_id, {"weight": [WEIGHT] * 64, "bias": [BIAS] * 64}, "normaliser.json"
    )
    rows = load_splits(cfg.data, cfg.train.seed).x_test[:5]
    model_takes = rows if scales_itself else rows * WEIGHT + BIAS
    expected = run.model.predict(model_takes.astype("float32"), verbose=0)
    np.testing.assert_allclose(predicted(run.run_id, rows, tmp_path), expected, atol=1e-5)

    # An export of the old kind says what its inputs must be.
    assert main(["export", "--run-id", run.run_id, "--output", str(tmp_path / "saved")]) == 0
    note = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert note == (
        []
        if scales_itself
        else [
            f"note: run {run.run_id} predates models that scale their own inputs: this model "
            "takes inputs scaled with the run's normaliser.json (tfdl predict applies it)"
        ]
    )
