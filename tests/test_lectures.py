"""The lecture demonstrations (`make lectures`): each shipped pipeline shows its point."""

import json
import os
import re

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

import tfdl
from tfdl.callbacks.symmetry import HiddenUnits, distinct_units
from tfdl.cli import main
from tfdl.config import apply_overrides, load_pipeline, load_tuning, validate
from tfdl.config.schema import OPTIMIZERS
from tfdl.errors import ConfigError

from .conftest import PROJECT, TINY

LECTURES = PROJECT / "pipelines" / "lectures"
SEARCH = PROJECT / "tuning" / "optimizers_grid.yaml"
OPTIMIZER_NAMES = [c.model_fields["name"].default for c in OPTIMIZERS if c.__name__ != "AdamW"]
QUICK = ["train.verbose=0", "tracking.log_model=false"]  # the model file is not the point here


@pytest.fixture(scope="module")
def lecture_store(tmp_path_factory):
    """One MLflow store for the module's runs (creating a store's tables takes seconds)."""
    folder = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        yield folder


def run(name: str, *overrides: str):
    return tfdl.train(LECTURES / f"{name}.yaml", [*QUICK, *overrides])


def metric(run_id: str, key: str) -> list[float]:
    history = MlflowClient().get_metric_history(run_id, key)
    return [m.value for m in sorted(history, key=lambda m: m.step)]


# ------------------------------------------------------------------------ shipped and wired


def test_every_demonstration_validates_and_make_lectures_runs_them_all(capsys):
    makefile = (PROJECT / "Makefile").read_text()
    listed = re.search(r"^LECTURES := (.*?)(?<!\\)\n", makefile, re.S | re.M).group(1)
    in_make = set(listed.replace("\\", " ").split())
    shipped = {p.stem for p in LECTURES.glob("*.yaml")}
    # optimizers.yaml is the search's pipeline: make lectures runs it through the search.
    assert in_make == shipped - {"optimizers"} and len(in_make) == 14
    assert "tuning/optimizers_grid.yaml" in makefile.split("\nlectures:")[1].split("\n\n")[0]

    experiments = {}
    for path in sorted(LECTURES.glob("*.yaml")):
        cfg = load_pipeline(path)
        assert cfg.description.startswith("Lecture 1, ")
        experiments.setdefault(cfg.tracking.experiment, []).append(cfg.tracking.run_name)
    assert set(experiments) == {
        "lecture-activation-functions",
        "lecture-weight-initialisation",
        "lecture-schedules",
        "lecture-optimizers",
        "lecture-batch-size",
    }
    for name, runs in experiments.items():  # one run name per variant of a demonstration
        assert name == "lecture-optimizers" or len(set(runs)) == len(runs) > 1, name

    job, base = load_tuning(SEARCH)
    assert job.tuner == "grid" and job.space["train.optimizer.name"].values == OPTIMIZER_NAMES
    assert validate(base).tracking.experiment == "lecture-optimizers"

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "lecture demonstrations (make lectures):" in out
    assert all(f"pipelines/lectures/{stem}.yaml" in out for stem in shipped)


# ---------------------------------------------------------- a search over the optimizer itself


def _job(tmp_path, pipeline: dict, space: dict, overrides=()) -> tuple:
    (tmp_path / "p.yaml").write_text(json.dumps(pipeline))
    job = {"pipeline": str(tmp_path / "p.yaml"), "tuner": "grid", "space": space}
    (tmp_path / "job.yaml").write_text(json.dumps({**job, "overrides": list(overrides)}))
    return load_tuning(tmp_path / "job.yaml")


ADAM_TUNED = {
    **TINY,
    "train": {"optimizer": {"name": "adam", "learning_rate": 0.005, "beta_1": 0.8, "clipnorm": 1}},
}
NAMES = {"train.optimizer.name": {"type": "choice", "values": ["sgd", "adadelta", "adam"]}}


def trial(base: dict, **values):
    return validate(apply_overrides(base, [f"{k}={json.dumps(v)}" for k, v in values.items()]))


def test_a_choice_of_optimizer_gives_each_its_own_defaults(tmp_path):
    # The pipeline's adam settings (beta_1 is adam's alone) do not leak into sgd's trial.
    _, base = _job(tmp_path, ADAM_TUNED, NAMES)
    for name, rate in [("sgd", 0.01), ("adadelta", 1.0), ("adam", 0.001)]:
        opt = trial(base, **{"train.optimizer.name": name}).train.optimizer
        assert (opt.name, opt.learning_rate, opt.clipnorm) == (name, rate, 1.0)  # clipping stays
    assert trial(base, **{"train.optimizer.name": "adam"}).train.optimizer.beta_1 == 0.9


def test_a_rate_in_the_space_or_the_overrides_applies_to_every_optimizer(tmp_path):
    rates = {"train.optimizer.learning_rate": {"type": "choice", "values": [0.03]}}
    _, base = _job(tmp_path, ADAM_TUNED, {**NAMES, **rates})
    chosen = trial(
        base, **{"train.optimizer.name": "adadelta", "train.optimizer.learning_rate": 0.03}
    )
    assert chosen.train.optimizer.learning_rate == 0.03
    _, fixed = _job(tmp_path, ADAM_TUNED, NAMES, ["train.optimizer.learning_rate=0.2"])
    assert trial(fixed, **{"train.optimizer.name": "sgd"}).train.optimizer.learning_rate == 0.2
    # a search that leaves the optimizer alone keeps the pipeline's
    _, kept = _job(tmp_path, ADAM_TUNED, {"model.units": {"type": "choice", "values": [[8]]}})
    assert validate(kept).train.optimizer.learning_rate == 0.005


def test_a_mistake_in_the_pipelines_optimizer_is_still_an_error(tmp_path):
    typo = {**TINY, "train": {"optimizer": {"name": "adam", "learning_rat": 0.1}}}
    with pytest.raises(ConfigError) as err:
        _job(tmp_path, typo, NAMES)
    assert err.value.line().startswith("error: train.optimizer.learning_rat: unknown key")


@pytest.mark.slow
def test_the_optimizer_grid_trains_each_optimizer_at_its_own_rate(lecture_store):
    search = tfdl.tune(SEARCH, ["epochs=1"], overwrite=True)
    assert not [k for k in os.environ if k.startswith("KERASTUNER_")]
    client = MlflowClient()
    trials = client.search_runs(
        [client.get_experiment_by_name("lecture-optimizers").experiment_id],
        f"tags.mlflow.parentRunId = '{search.parent_id}'",
    )
    by_name = {t.data.params["train.optimizer.name"]: t for t in trials}
    assert sorted(by_name) == sorted(OPTIMIZER_NAMES) and len(trials) == len(OPTIMIZER_NAMES)
    for name, t in by_name.items():  # the rate each trial really trained at: its own default
        default = validate({**TINY, "train": {"optimizer": {"name": name}}}).train.optimizer
        assert metric(t.info.run_id, "learning_rate") == [pytest.approx(default.learning_rate)]
    # Same data, net, initial weights and seed: only the optimizer tells the trials apart.
    losses = [metric(t.info.run_id, "loss")[0] for t in trials]
    assert len({round(v, 6) for v in losses}) == len(losses), losses


# ---------------------------------------------------------------- activation functions


def _grid_classes(model, n: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """The model's class on an n x n grid over the spirals' plane."""
    axis = np.linspace(-2.0, 2.0, n, dtype="float32")
    grid = np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
    return grid, (np.asarray(model(grid, training=False))[:, 0] > 0.5).astype(int)


def _line_agreement(grid, classes) -> float:
    """How much of the grid's labelling one straight line reproduces (logistic regression
    fitted to it): 1.0 when the classes are linearly separable."""
    from sklearn.linear_model import LogisticRegression

    if len(set(classes)) < 2:  # one class everywhere: any line off the plane separates it
        return 1.0
    return LogisticRegression(C=1e4, max_iter=2000).fit(grid, classes).score(grid, classes)


@pytest.mark.slow
def test_without_an_activation_the_boundary_is_a_line(lecture_store):
    linear = run("activation_linear", "train.epochs=25")
    relu = run("activation_relu", "train.epochs=25")
    linear_line = _line_agreement(*_grid_classes(linear.model))
    relu_line = _line_agreement(*_grid_classes(relu.model))
    assert linear_line > 0.995, linear_line  # a line: W3 W2 W1 is one matrix
    assert relu_line < 0.95, relu_line  # a curve no line follows
    accuracy = linear.test_metrics["accuracy"], relu.test_metrics["accuracy"]
    assert accuracy[1] > 0.85 and accuracy[1] > accuracy[0] + 0.2, accuracy


# ---------------------------------------------------------------------- zero initialisation


def test_distinct_units_counts_columns_equal_within_the_tolerance():
    a, b = np.array([1.0, -2.0, 0.5]), np.array([1.0, 2.0, 0.5])
    kernel = np.stack([a, a + 1e-9, b, a], axis=1)  # units 0, 1, 3 alike; 2 differs
    assert distinct_units(kernel) == 2
    assert distinct_units(kernel, bias=np.array([0.0, 0.0, 0.0, 1.0])) == 3  # biases count
    assert distinct_units(kernel, tolerance=10.0) == 1
    assert distinct_units(np.zeros((5, 8))) == 1
    assert distinct_units(np.random.default_rng(0).normal(size=(5, 8))) == 8


def test_hidden_units_reads_every_hidden_dense_layer_and_not_the_output():
    import keras

    from tfdl.layers import PerceptronDense

    inputs = keras.Input((3,))
    x = keras.layers.Dense(4, kernel_initializer="zeros", name="a")(inputs)
    x = PerceptronDense(5, name="b")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="output")(x))
    callback, logs = HiddenUnits(), {}
    callback.set_model(model)
    callback.on_epoch_end(0, logs)
    assert logs == {"distinct_units/a": 1, "distinct_units/b": 5}


@pytest.mark.slow
def test_zero_weights_leave_one_distinct_unit_per_layer_and_he_as_many_as_its_width(
    lecture_store,
):
    epochs = 3
    zeros, he = (
        run("init_zeros", f"train.epochs={epochs}"),
        run("init_he", f"train.epochs={epochs}"),
    )
    widths = load_pipeline(LECTURES / "init_zeros.yaml").model.units
    layers = [f"dense_{i}" for i in range(len(widths))]
    for layer, width in zip(layers, widths, strict=True):
        assert metric(zeros.run_id, f"distinct_units/{layer}") == [1] * epochs
        assert metric(he.run_id, f"distinct_units/{layer}") == [width] * epochs
    # The zero net's units did move: all together, not not at all.
    kernel = zeros.model.get_layer("dense_0").get_weights()[0]
    assert np.abs(kernel).max() > 1e-3 and np.ptp(kernel, axis=1).max() == 0.0
    assert he.test_metrics["accuracy"] > zeros.test_metrics["accuracy"] + 0.3


# ---------------------------------------------------------------------------- schedules


@pytest.mark.slow
def test_the_schedule_demonstrations_show_their_shapes_and_decay_beats_a_constant_rate(
    lecture_store,
):
    names = ("constant", "dropout_ramp", "exponential", "cosine_warmup", "one_cycle", "plateau")
    runs = {name: run(f"schedule_{name}") for name in names}
    rate = {name: np.array(metric(r.run_id, "learning_rate")) for name, r in runs.items()}
    assert len(rate["constant"]) == 15 and np.all(rate["constant"] == rate["constant"][0])
    # The dropout ramp: 0 -> 0.5 over its 10 epochs, then held.
    dropout = metric(runs["dropout_ramp"].run_id, "dropout_rate")
    np.testing.assert_allclose(dropout, [min(e / 10, 1.0) * 0.5 for e in range(15)], atol=1e-6)
    # Exponential: x0.8 per epoch.
    np.testing.assert_allclose(rate["exponential"][1:] / rate["exponential"][:-1], 0.8, rtol=1e-3)
    # Cosine with warmup and one-cycle: up first, then down to far below their peak.
    for name, peak_epoch in (("cosine_warmup", 2), ("one_cycle", 4)):
        r = rate[name]
        assert abs(int(r.argmax()) - peak_epoch) <= 1, (name, r)
        assert r[-1] < 0.05 * r.max() and r[0] < r.max()
    # Reduce on plateau: the rate only ever halves.
    steps = rate["plateau"][1:] / rate["plateau"][:-1]
    assert np.all(np.isclose(steps, 1.0) | np.isclose(steps, 0.5)) and steps.min() == 0.5
    # The lecture's point: a rate that decays ends at a lower validation loss.
    final = {name: metric(r.run_id, "val_loss")[-1] for name, r in runs.items()}
    for name in ("exponential", "cosine_warmup", "one_cycle"):
        assert final[name] < final["constant"], final


# --------------------------------------------------------------------------- batch size


@pytest.mark.slow
def test_batch_size_runs_log_their_wall_time_and_compare_shows_it(lecture_store):
    from tfdl.compare import compare

    epochs = 4
    full = run("batch_full", f"train.epochs={epochs}")
    sgd = run("batch_sgd", f"train.epochs={epochs}")
    times = {r.run_id: metric(r.run_id, "epoch_time_s") for r in (full, sgd)}
    assert all(len(t) == epochs and min(t) > 0 for t in times.values())
    # Past the first epoch (which traces the graph), 350 steps of one point take longer
    # than one step of all 350.
    assert np.median(times[sgd.run_id][1:]) > np.median(times[full.run_id][1:])

    table, _ = compare(["lecture-batch-size"])
    rows = table.set_index("run_id")
    for run_id, epoch_times in times.items():
        assert rows.loc[run_id, "train_time_s"] == pytest.approx(sum(epoch_times), abs=0.051)
    assert list(table.columns).index("train_time_s") < list(table.columns).index("duration_s")
