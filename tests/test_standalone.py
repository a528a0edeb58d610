"""A logged model works outside tfdl: raw inputs in, right answers out, no tfdl installed."""

import json
import subprocess
import sys

import numpy as np
import pytest

import tfdl
from tfdl.config import validate
from tfdl.data.split import load_splits

from .conftest import PROJECT, TINY

# Run in a process from which the installed tfdl is hidden: no editable-install finder, no
# project folder on the path. Only the copy the model carries can then be imported.
HIDDEN = f"""
import importlib.util, json, sys
from pathlib import Path
project = Path({str(PROJECT)!r})
sys.meta_path = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
sys.path = [p for p in sys.path if Path(p or ".").resolve() != project]
assert importlib.util.find_spec("tfdl") is None, "tfdl is still importable"
import mlflow, numpy as np
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(sys.argv[2])
x = np.load(sys.argv[3])
print(json.dumps({{
    "predictions": np.asarray(model.predict(x)).tolist(),
    "inputs": [str(s) for s in model.metadata.get_input_schema().inputs],
    "metadata": model.metadata.metadata,
    "tfdl_from": str(Path(sys.modules["tfdl"].__file__).parent.parent.name),
}}))
"""


def load_hidden(uri, model_uri, x, tmp_path):
    np.save(tmp_path / "x.npy", x)
    out = subprocess.run(
        [sys.executable, "-c", HIDDEN, uri, model_uri, str(tmp_path / "x.npy")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize(
    "data, model",
    [
        ({"source": "digits"}, {"arch": "deep_mlp", "units": [32], "dropout": 0.1}),
        ({"source": "digits", "as_images": True}, {"arch": "cnn2d", "filters": [8]}),
    ],
    ids=["mlp", "cnn2d"],
)
def test_the_logged_model_answers_raw_inputs_without_tfdl(data, model, store, tmp_path):
    """Digits as a user has them (pixel values 0 to 16): the model scales them itself and
    its custom layers (the scheduled dropout) come with it."""
    pipeline = {**TINY, "data": data, "model": model, "train": {**TINY["train"], "epochs": 6}}
    result = tfdl.train(pipeline)
    raw = load_splits(validate(pipeline).data, 42)
    assert raw.x_test.max() == 16  # raw pixels, not scaled ones
    x = raw.x_test[:20].astype("float32")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    got = load_hidden(uri, f"runs:/{result.run_id}/model", x, tmp_path)
    np.testing.assert_allclose(
        got["predictions"], result.model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
    right = int((np.argmax(got["predictions"], axis=1) == raw.y_test[:20]).sum())
    assert right >= 16, right  # the run's test accuracy is about 0.9 on these settings
    assert got["tfdl_from"] == "code"  # the copy inside the model, not the installed one
    shape = "(-1, 64)" if model["arch"] == "deep_mlp" else "(-1, 8, 8, 1)"
    assert got["inputs"] == [f"Tensor('float32', {shape})"]  # the raw input
    assert got["metadata"]["class_names"] == [str(i) for i in range(10)]
    if model["arch"] == "deep_mlp":
        assert got["metadata"]["feature_names"][:2] == ["pixel_0_0", "pixel_0_1"]
