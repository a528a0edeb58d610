"""The accuracy benchmark's bookkeeping, with no training: the README quotes the results
file as it renders, and the baselines give known values on tiny known splits."""

import json
import math

import numpy as np
import pytest

from benchmarks import accuracy, plain_digits

RESULTS = accuracy.RESULTS / "accuracy.json"


def test_readme_quotes_the_results_file():
    """A hand edit of the README's table, or of accuracy.md, is caught here: both are what
    `python -m benchmarks.accuracy --readme` renders from accuracy.json."""
    quoted = accuracy.readme_quoted()
    assert quoted is not None, "README.md has lost its accuracy block markers"
    if not RESULTS.exists():
        pytest.skip("no benchmarks/results/accuracy.json yet: make bench-accuracy")
    results = json.loads(RESULTS.read_text())
    again = "edited by hand? python -m benchmarks.accuracy --readme renders it again"
    assert quoted == accuracy.readme_block(results), f"README.md: {again}"
    md = (accuracy.RESULTS / "accuracy.md").read_text()
    assert md == accuracy.markdown(results), f"accuracy.md: {again}"


@pytest.mark.parametrize("model", sorted(plain_digits.SETTINGS))
def test_the_plain_keras_script_trains_the_shipped_pipeline(model):
    """The time-to-goal comparison is fair only while the hand-written script mirrors the
    pipeline: a pipeline changed without its plain twin fails here."""
    import pandas as pd

    from tfdl import load_pipeline
    from tfdl.config import read_yaml
    from tfdl.data.split import load_splits

    name = next(p for p, (m, _) in accuracy.DIGITS_GOALS.items() if m == model)
    raw = read_yaml(accuracy.PIPELINES / f"{name}.yaml")
    shipped = {k: raw[k] for k in ("data", "model", "train", "callbacks") if k in raw}
    settings = plain_digits.SETTINGS[model]
    assert settings == pd.json_normalize(shipped).iloc[0].to_dict()
    # The split and scaling the script hard-codes are tfdl's defaults for the pipeline.
    cfg = load_pipeline(accuracy.PIPELINES / f"{name}.yaml")
    s = load_splits(cfg.data, cfg.train.seed)
    plain = plain_digits.data(images=settings.get("data.as_images", False))
    mean = np.asarray(s.spec.normalizer["mean"])
    std = np.sqrt(np.asarray(s.spec.normalizer["variance"]))
    for (x, y), (x_tfdl, y_tfdl) in zip(
        plain, [(s.x_train, s.y_train), (s.x_val, s.y_val), (s.x_test, s.y_test)], strict=True
    ):
        assert np.array_equal(y, y_tfdl)
        np.testing.assert_allclose(x, ((x_tfdl - mean) / std).reshape(x.shape), atol=1e-5)


def test_majority_class():
    assert accuracy.majority([0, 0, 1], [0, 0, 1]) == pytest.approx(2 / 3)
    assert accuracy.majority([2, 2, 1], [1, 1, 1, 2]) == pytest.approx(1 / 4)


def test_logistic_regression_on_a_separable_split():
    x = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [12.0]])
    y = np.array([0, 0, 0, 1, 1, 1])
    assert accuracy.logistic(x, y, np.array([[0.5], [11.5]]), np.array([0, 1])) == 1.0
    images = x.reshape(-1, 1, 1, 1)  # flattened as they come
    assert accuracy.logistic(images, y, images, y) == 1.0


def test_text_logistic_regression_on_word_counts():
    texts = ["good fine", "good great", "bad awful", "bad poor"]
    assert accuracy.text_logistic(texts, [1, 1, 0, 0], ["great", "awful"], [1, 0]) == 1.0


def test_regression_baselines():
    x = np.arange(10.0).reshape(-1, 1)
    y = 3 * x.ravel() + 1
    out = accuracy.regression(x, y, np.array([[20.0]]), np.array([61.0]))
    assert out["mean_mae"] == pytest.approx(61 - y.mean())
    assert out["ridge_mae"] < out["mean_mae"] / 5  # near the line (ridge shrinks it a little)


def test_language_model_baselines():
    assert accuracy.uniform_loss(4) == pytest.approx(math.log(4))
    # counts 3 and 1, smoothed to 4/6 and 2/6 over a vocabulary of two
    assert accuracy.unigram_loss([0, 0, 0, 1], [0, 1], 2) == pytest.approx(
        -(math.log(4 / 6) + math.log(2 / 6)) / 2
    )


def test_position_majority():
    train = np.array([[1, 2], [1, 3], [4, 3]])
    out = accuracy.position_majority(train, np.array([[1, 3], [1, 2]]))
    assert out == {"per_token": 0.75, "exact": 0.5}


def test_clearly_above():
    assert accuracy.clearly_above(0.95, 0.60, 750)
    assert not accuracy.clearly_above(0.61, 0.60, 750)


def _entry(name, arch, acc, deep_mlp=None, **extra):
    baselines = {"majority": 0.1, "logistic": 0.5}
    if deep_mlp is not None:
        baselines["deep_mlp"] = deep_mlp
    return {
        "architecture": arch,
        "dataset": "mnist1d" if deep_mlp is not None else "digits",
        "task": "multiclass",
        "parameters": 1000,
        "epochs": 10,
        "max_epochs": 30,
        "train_s": 5.0,
        "test": {"accuracy": acc, "loss": 0.1},
        "n_test": 750,
        "baselines": baselines,
        **extra,
    }


def _results(pipelines):
    machine = {"cpu": "x", "cores": 2, "gpu": None, "date": "2026-01-01", "python": "3.11"}
    machine |= {"tensorflow": "2", "keras": "3", "mlflow": "3", "numpy": "2"}
    stamp = {"date": "2026-01-01", "commit": "abc"}
    return {
        "machine": machine,
        "shipped": {
            n: {k: e[k] for k in ("architecture", "dataset")} for n, e in pipelines.items()
        },
        "pipelines": pipelines,
        "measured": dict.fromkeys(pipelines, stamp),
    }


def test_goals_read_the_results():
    r = _results(
        {
            "mlp": _entry("mlp", "deep_mlp", 0.975),
            "cnn2d": _entry("cnn2d", "cnn2d", 0.98),
            "lstm": _entry("lstm", "lstm", 0.96, deep_mlp=0.6),
            "simple_rnn": _entry("simple_rnn", "simple_rnn", 0.61, deep_mlp=0.6),
        }
    )
    met = [g["met"] for g in accuracy.goals(r)]
    # digits CNN, digits MLP, seq2seq, MNIST-1D above deep_mlp, MNIST-1D best, char LM
    assert met == [False, True, None, False, True, None]  # simple_rnn: not clearly above
    assert "- MNIST-1D: the best of them >= 95%: met (lstm 0.9600)" in accuracy.goal_lines(r)


def test_a_goal_over_pipelines_not_all_measured_is_not_met_yet():
    r = _results({"lstm": _entry("lstm", "lstm", 0.96, deep_mlp=0.6)})
    r["shipped"]["gru"] = {"architecture": "gru", "dataset": "mnist1d"}
    above, best = accuracy.goals(r)[3:5]
    assert above["met"] is None and "not measured: gru" in above["value"]
    assert best["met"] is True  # whatever gru does, the best is at least lstm's


def test_partial_runs_merge_stamped():
    old = _results({"mlp": _entry("mlp", "deep_mlp", 0.9), "gone": _entry("x", "x", 0.5)})
    new = _results({"cnn2d": _entry("cnn2d", "cnn2d", 0.99)})
    new["shipped"]["mlp"] = old["shipped"]["mlp"]
    new["references"] = {}
    new["measured"] = {"cnn2d": {"date": "2026-02-02", "commit": "def"}}
    out = accuracy.merged(old, new)
    assert sorted(out["pipelines"]) == ["cnn2d", "mlp"]  # "gone" is no longer shipped
    assert out["measured"]["mlp"]["date"] == "2026-01-01"
    assert out["measured"]["cnn2d"]["commit"] == "def"
    assert "2026-01-01 to 2026-02-02" in accuracy.readme_block(out)
