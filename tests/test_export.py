"""tfdl export: a logged model as a TensorFlow SavedModel that plain TensorFlow loads, tfdl
nowhere in sight, and that answers raw inputs as tfdl predict does."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfdl.cli import main

from .conftest import PROJECT
from .test_serve import predicted, raw_rows, trained

# Plain TensorFlow: tfdl's editable install and the project's sources (not the installed
# packages, wherever the environment lives) are taken off the import path.
LOAD = f"""
import importlib.util, os, sys
project = {str(PROJECT)!r}


def projects(path):
    path = os.path.abspath(path or ".")
    return os.path.commonpath([path, project]) == project and not path.startswith(sys.prefix)


sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "")]
sys.path[:] = [p for p in sys.path if not projects(p)]
assert importlib.util.find_spec("tfdl") is None, "tfdl is importable"
import numpy as np
import tensorflow as tf

folder, rows, out = sys.argv[1:]
model = tf.saved_model.load(folder)
x = np.load(rows).astype("float32")
np.save(out, model.serve(x).numpy())
signature = model.signatures["serving_default"]
(served,) = signature(tf.constant(x)).values()
np.testing.assert_allclose(served.numpy(), np.load(out), atol=1e-6)
print("tfdl" in sys.modules)
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["tabular", "image"])
def test_the_saved_model_answers_raw_inputs_as_predict_does(kind, store, tmp_path, capsys):
    cfg, run = trained(kind)
    rows, _ = raw_rows(cfg)
    expected = predicted(["--run-id", run.run_id], rows, tmp_path)
    folder = tmp_path / "exported" / kind
    assert main(["export", "--run-id", run.run_id, "--output", str(folder)]) == 0
    shape = ", ".join(["None", *map(str, rows.shape[1:])])
    assert capsys.readouterr().out.splitlines()[-2:] == [
        f"wrote runs:/{run.run_id}/model as a TensorFlow SavedModel to {folder}",
        f"load it with tf.saved_model.load({str(folder)!r}).serve(x), x: float32 ({shape})",
    ]
    np.save(tmp_path / "rows.npy", rows)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    args = [str(folder), str(tmp_path / "rows.npy"), str(tmp_path / "out.npy")]
    done = subprocess.run(
        [sys.executable, "-c", LOAD, *args], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "False"
    got = np.load(tmp_path / "out.npy")
    columns = [c for c in expected.columns if c.startswith("p_")]
    np.testing.assert_allclose(got, expected[columns].to_numpy(), atol=1e-5)


def test_a_folder_in_use_or_impossible_is_one_line_and_left_alone(store, tmp_path, capsys):
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    (tmp_path / "file").write_text("a file")
    cases = [
        (used, f"error: --output: {used} is not empty; allowed: a new or empty folder"),
        (
            tmp_path / "file" / "model",
            f"error: --output: cannot create {tmp_path / 'file' / 'model'}: "
            f"{tmp_path / 'file'} is not a folder; allowed: a new or empty folder",
        ),
        (
            tmp_path / "file",
            f"error: --output: {tmp_path / 'file'} is a file; allowed: a new or empty folder",
        ),
    ]
    for folder, line in cases:
        assert main(["export", "--run-id", "any", "--output", str(folder)]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [line]
    assert [p.name for p in used.iterdir()] == ["notes.txt"]
    assert (used / "notes.txt").read_text() == "mine"
    assert (tmp_path / "file").read_text() == "a file"
    assert list(Path(store).iterdir()) == []  # the store was never opened
