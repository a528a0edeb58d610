"""Models back from runs: tfdl evaluate and tfdl predict, and their one-line errors."""

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tfdl import train
from tfdl.cli import main
from tfdl.config import validate
from tfdl.data.split import load_splits

from .conftest import TINY


@pytest.fixture
def trained(store):
    return train(validate(TINY))


def test_evaluate_reproduces_the_run_s_own_test_metrics(trained, capsys):
    assert main(["evaluate", "--run-id", trained.run_id]) == 0
    printed = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())
    logged = MlflowClient().get_run(trained.run_id).data.metrics
    assert float(printed["test_accuracy"]) == pytest.approx(logged["test_accuracy"], abs=1e-5)
    assert main(["evaluate", "--run-id", trained.run_id, "--split", "val"]) == 0
    printed = dict(line.split("\t") for line in capsys.readouterr().out.splitlines())
    assert float(printed["val_loss"]) == pytest.approx(trained.history["val_loss"][-1], rel=1e-4)


def test_the_logged_pictures_count_the_logged_test_accuracy(trained):
    """The confusion matrix is drawn from the model as logged (scaling inside it): its
    diagonal over its total is the run's test accuracy."""
    import mlflow

    run = MlflowClient().get_run(trained.run_id)
    path = mlflow.artifacts.download_artifacts(
        f"{run.info.artifact_uri}/pictures/confusion_matrix.csv"
    )
    counts = pd.read_csv(path, index_col=0).to_numpy()
    assert counts.trace() / counts.sum() == pytest.approx(
        run.data.metrics["test_accuracy"], abs=1e-7
    )


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_predict_takes_raw_inputs_and_names_the_classes(trained, suffix, tmp_path, capsys):
    cfg = validate(TINY)
    raw = load_splits(cfg.data, cfg.train.seed)  # raw pixels: the model scales them itself
    path = tmp_path / f"rows{suffix}"
    if suffix == ".npy":
        np.save(path, raw.x_test[:6])
    else:  # columns in another order: matched to the training features by name
        frame = pd.DataFrame(raw.x_test[:6], columns=raw.spec.feature_names)
        frame[frame.columns[::-1]].to_csv(path, index=False)
    out = tmp_path / "predictions.csv"
    assert (
        main(["predict", "--run-id", trained.run_id, "--input", str(path), "--output", str(out)])
        == 0
    )
    got = pd.read_csv(out)
    expected = trained.model.predict(raw.x_test[:6], verbose=0)
    np.testing.assert_allclose(got[[f"p_{c}" for c in range(10)]].to_numpy(), expected, atol=1e-5)
    assert list(got["prediction"]) == [int(i) for i in expected.argmax(axis=1)]


def test_bad_runs_and_inputs_are_one_line_errors(store, tmp_path, capsys):
    no_model = train(validate({**TINY, "tracking": {"experiment": "test", "log_model": False}}))
    np.save(tmp_path / "narrow.npy", np.zeros((2, 10)))
    (tmp_path / "rows.txt").write_text("1,2\n")
    cases = [
        (["evaluate", "--run-id", "nope"], "error: --run-id: no run 'nope'"),
        (["predict", "--run-id", "nope", "--input", "x.npy"], "error: --run-id: no run 'nope'"),
        (["evaluate", "--run-id", no_model.run_id], "error: --run-id: run"),
        (
            ["predict", "--run-id", no_model.run_id, "--input", str(tmp_path / "narrow.npy")],
            "error: --input:",
        ),
        (
            ["predict", "--run-id", no_model.run_id, "--input", str(tmp_path / "missing.npy")],
            "error: --input:",
        ),
        (
            ["predict", "--run-id", no_model.run_id, "--input", str(tmp_path / "rows.txt")],
            "error: --input:",
        ),
    ]
    for args, prefix in cases:
        assert main(args) == 2, args
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(prefix), line
    narrow = ["predict", "--run-id", no_model.run_id, "--input", str(tmp_path / "narrow.npy")]
    main(narrow)
    assert "rows of shape (10,), the model takes (64,)" in capsys.readouterr().err


def test_predict_input_problems_are_one_line_each_before_the_model_loads(store, tmp_path, capsys):
    run = train(validate({**TINY, "tracking": {"experiment": "test", "log_model": False}}))
    names = validate(TINY).data  # digits: 64 named pixel columns
    columns = list(load_splits(names, 0).spec.feature_names)
    good = pd.DataFrame(np.ones((3, 64)), columns=columns)
    files = {
        "named.csv": pd.DataFrame({"x": [1.0], "y": [2.0]}),
        "gap.csv": good.mask((good.index == 1)[:, None] & (good.columns == "pixel_0_3")),
        "empty.csv": b"",
        "latin1.csv": "pixel_0_0\n\xe9\n".encode("latin-1"),
        "garbage.npy": b"\x93NUMPY garbage",
        "strings.npy": np.array([["a"] * 64]),
        "objects.npy": np.array([[object()] * 64], dtype=object),
        "nan.npy": np.where(np.arange(128).reshape(2, 64) == 70, np.nan, 1.0),
    }
    for name, content in files.items():
        if isinstance(content, pd.DataFrame):
            content.to_csv(tmp_path / name, index=False)
        elif isinstance(content, bytes):
            (tmp_path / name).write_bytes(content)
        else:
            np.save(tmp_path / name, content, allow_pickle=True)
    predict = ["predict", "--run-id", run.run_id, "--input"]
    cases = {
        "named.csv": "columns missing pixel_0_0, pixel_0_1",
        "gap.csv": "an empty cell, column 'pixel_0_3', line 3",
        "empty.csv": "is empty",
        "latin1.csv": "is not UTF-8",
        "garbage.npy": "not a NumPy .npy array",
        "strings.npy": "an array of <U1",
        "objects.npy": "not a NumPy .npy array",
        "nan.npy": "a missing or infinite value in row 1, value 6",
    }
    for name, words in cases.items():
        assert main([*predict, str(tmp_path / name)]) == 2, name
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("error: --input: ") and words in line, line
    assert "unexpected x, y" in _error(main, [*predict, str(tmp_path / "named.csv")], capsys)
    good.to_csv(tmp_path / "good.csv", index=False)
    for output, words in [(tmp_path / "no" / "p.csv", "no such folder"), (tmp_path, "is a folder")]:
        args = [*predict, str(tmp_path / "good.csv"), "--output", str(output)]
        line = _error(main, args, capsys)
        assert line.startswith("error: --output: ") and words in line, line


def _error(main, args, capsys) -> str:
    assert main(args) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    return line
