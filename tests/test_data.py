"""The offline data sources, the train/val/test split and the normalisation (no TensorFlow)."""

import inspect
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from pydantic import TypeAdapter, ValidationError
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from tfdl.data.schema import SOURCES, DataConfig
from tfdl.data.spec import Arrays, DataSpec
from tfdl.data.split import get_loader, load_splits, split_and_normalise
from tfdl.errors import ConfigError

ADAPTER = TypeAdapter(DataConfig)


def config(**fields):
    """A data section as the pipeline schema would validate it."""
    return ADAPTER.validate_python(fields)


def splits_of(seed=0, **fields):
    return load_splits(config(**fields), seed)


def parts(s):
    return (s.x_train, s.y_train, s.x_val, s.y_val, s.x_test, s.y_test)


# --- schema ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_source_describes_itself_and_has_its_loader(name):
    cls = SOURCES[name]
    assert cls.model_fields["source"].annotation.__args__ == (name,)
    assert (cls.__doc__ or "").strip().splitlines()[0].strip()
    loader = get_loader(cls.loader)
    assert callable(loader), f"loader {cls.loader} is missing"
    assert list(inspect.signature(loader).parameters) == ["cfg", "seed"]


def test_schema_module_does_not_import_the_heavy_libraries():
    code = (
        "import sys, tfdl.data.schema\n"
        "heavy = {'numpy', 'sklearn', 'pandas'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_discriminator_picks_the_source_class_and_rejects_unknown_keys():
    assert type(config(source="spirals", turns=2)) is SOURCES["spirals"]
    with pytest.raises(ValidationError):
        config(source="moons", wiggle=1)
    with pytest.raises(ValidationError):
        config(source="no_such_source")


@pytest.mark.parametrize(
    "fields",
    [
        {"val_fraction": 0.5, "test_fraction": 0.4},  # sum 0.9: nothing much left to train
        {"val_fraction": 0.6, "test_fraction": 0.35},
        {"val_fraction": 0.0},
        {"test_fraction": 1.0},
        {"seed": -1},
    ],
)
def test_bad_fractions_and_seeds_are_rejected(fields):
    with pytest.raises(ValidationError):
        config(source="iris", **fields)


def test_fraction_error_names_both_fields():
    with pytest.raises(ValidationError, match="val_fraction.*test_fraction"):
        config(source="iris", val_fraction=0.45, test_fraction=0.45)


# --- every source: shapes, dtypes, specs ----------------------------------------------------

# (fields, total samples, input_shape, task, num_classes)
CASES = {
    "digits": ({}, 1797, (64,), "multiclass", 10),
    "digits_images": ({"source": "digits", "as_images": True}, 1797, (8, 8, 1), "multiclass", 10),
    "iris": ({}, 150, (4,), "multiclass", 3),
    "wine": ({}, 178, (13,), "multiclass", 3),
    "breast_cancer": ({}, 569, (30,), "binary", 2),
    "diabetes": ({}, 442, (10,), "regression", None),
    "mnist1d": ({"num_samples": 400}, 400, (40,), "multiclass", 10),
    "mnist1d_seq": (
        {"source": "mnist1d", "num_samples": 400, "as_sequence": True},
        400,
        (40, 1),
        "multiclass",
        10,
    ),
    "pass_the_class": ({"n_samples": 300}, 300, (2,), "binary", 2),
    "moons": ({"n_samples": 200}, 200, (2,), "binary", 2),
    "circles": ({"n_samples": 200, "factor": 0.3}, 200, (2,), "binary", 2),
    "spirals": ({"n_samples": 201, "turns": 2.0}, 201, (2,), "binary", 2),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_source_shapes_dtypes_and_spec(case):
    fields, total, shape, task, k = CASES[case]
    s = splits_of(**{"source": case, **fields})
    assert s.spec.input_shape == shape and s.spec.task == task and s.spec.num_classes == k
    assert s.info["n_train"] + s.info["n_val"] + s.info["n_test"] == total
    for x, y in [(s.x_train, s.y_train), (s.x_val, s.y_val), (s.x_test, s.y_test)]:
        assert x.dtype == np.float32 and x.shape[1:] == shape and len(x) == len(y) > 0
        assert np.isfinite(x).all()
        if task == "regression":
            assert y.dtype == np.float32
        else:
            assert y.dtype == np.int64 and y.min() >= 0 and y.max() < k
    if task != "regression":
        assert len(s.spec.class_names) == k
        assert set(np.concatenate([s.y_train, s.y_val, s.y_test])) == set(range(k))
    if s.spec.feature_names:
        assert len(s.spec.feature_names) == int(np.prod(shape))


def test_two_d_toy_sets_are_red_and_green():
    for name in ("moons", "circles", "spirals"):
        assert splits_of(source=name).spec.class_names == ("red", "green")


def test_sklearn_names_are_kept():
    spec = splits_of(source="breast_cancer").spec
    assert spec.class_names == ("malignant", "benign")
    assert spec.feature_names[0] == "mean radius"


# --- the split ------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["iris", "moons", "mnist1d", "diabetes"])
def test_same_seed_same_splits_other_seed_other_splits(source):
    fields = {"num_samples": 200} if source == "mnist1d" else {}
    a, b, c = (splits_of(seed, source=source, **fields) for seed in (1, 1, 2))
    for p, q in zip(parts(a), parts(b), strict=True):
        np.testing.assert_array_equal(p, q)
    assert not np.array_equal(a.x_train, c.x_train)


def test_data_seed_overrides_the_training_seed():
    a = load_splits(config(source="moons", seed=7), 0)
    b = load_splits(config(source="moons", seed=7), 99)
    c = load_splits(config(source="moons"), 7)
    for p, q, r in zip(parts(a), parts(b), parts(c), strict=True):
        np.testing.assert_array_equal(p, q)
        np.testing.assert_array_equal(p, r)
    assert a.info["seed"] == 7


@pytest.mark.parametrize("source", ["digits", "wine", "breast_cancer"])
@pytest.mark.parametrize("fractions", [(0.15, 0.15), (0.1, 0.3)])
def test_split_is_stratified(source, fractions):
    s = splits_of(3, source=source, val_fraction=fractions[0], test_fraction=fractions[1])
    y = np.concatenate([s.y_train, s.y_val, s.y_test])
    share = np.bincount(y) / len(y)
    # Test and validation are each drawn stratified: within one sample of the whole's share.
    # Train is what is left after both draws, so it carries both roundings.
    for ys, slack in [(s.y_test, 1.0), (s.y_val, 1.0), (s.y_train, 2.0)]:
        counts = np.bincount(ys, minlength=len(share))
        assert np.abs(counts - share * len(ys)).max() <= slack


def numbered(n=100, task="multiclass", k=4):
    """Rows whose first feature is their row number, to follow them through the split."""
    x = np.column_stack([np.arange(n), np.random.default_rng(0).normal(size=n)])
    y = np.arange(n) % k if task != "regression" else np.linspace(0, 1, n)
    spec = DataSpec(input_shape=(2,), task=task, num_classes=k if task != "regression" else None)
    return Arrays(x=x.astype(np.float32), y=y, spec=spec)


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_splits_partition_the_rows(task):
    cfg = config(source="iris", normalize="none", val_fraction=0.2, test_fraction=0.25)
    s = split_and_normalise(numbered(task=task), cfg, seed=5)
    ids = [x[:, 0].astype(int) for x in (s.x_train, s.x_val, s.x_test)]
    assert sorted(np.concatenate(ids).tolist()) == list(range(100))  # no overlap, none lost
    assert [len(i) for i in ids] == [55, 20, 25]
    for i, y in zip(ids, (s.y_train, s.y_val, s.y_test), strict=True):
        np.testing.assert_array_equal(y, numbered(task=task).y[i])  # labels travel with rows


def test_a_class_too_small_to_stratify_is_a_config_error():
    arrays = numbered(n=40, k=2)
    arrays.y[:] = 0
    arrays.y[0] = 1  # one sample of class 1 cannot be in train, val and test
    with pytest.raises(ConfigError) as err:
        split_and_normalise(arrays, config(source="iris"), seed=0)
    assert err.value.field == "data.val_fraction"
    assert str(err.value).startswith("error: data.val_fraction: cannot split 40 samples")


def test_too_few_samples_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        splits_of(source="moons", n_samples=4)
    assert err.value.field == "data.val_fraction" and "\n" not in str(err.value)


# --- normalisation --------------------------------------------------------------------------


@pytest.mark.parametrize("how, scaler", [("standard", StandardScaler), ("minmax", MinMaxScaler)])
@pytest.mark.parametrize("source", ["wine", "digits"])
def test_normaliser_is_fitted_on_train_only(how, scaler, source):
    """The splits stay raw; the spec carries the training split's statistics, which
    (x - mean) / sqrt(variance) turns into scikit-learn's own transform."""
    raw = splits_of(4, source=source, normalize="none")
    s = splits_of(4, source=source, normalize=how)
    for a, b in [(raw.x_train, s.x_train), (raw.x_test, s.x_test), (raw.y_train, s.y_train)]:
        np.testing.assert_array_equal(a, b)  # nothing moves or changes in the splits
    assert raw.spec.normalizer is None and s.spec.normalizer["how"] == how
    fitted = scaler().fit(raw.x_train)
    mean = np.asarray(s.spec.normalizer["mean"])
    std = np.sqrt(np.asarray(s.spec.normalizer["variance"]))
    for x in (raw.x_val, raw.x_test):
        np.testing.assert_allclose((x - mean) / std, fitted.transform(x), rtol=1e-6, atol=1e-6)
    varies = raw.x_train.std(axis=0) > 0  # digits has pixels that are always blank
    assert np.all(std[~varies] == 1)  # a constant value is only centred, never divided by 0
    if how == "standard":
        assert s.info["train_mean_hi"] == pytest.approx(raw.x_train.mean(axis=0).max(), rel=1e-5)
    else:
        assert s.info["train_max_hi"] == pytest.approx(raw.x_train.max())
    assert s.info["normalize"] == how


def test_images_are_normalised_per_pixel_and_keep_their_shape():
    s = splits_of(source="digits", as_images=True)
    assert s.x_train.shape[1:] == (8, 8, 1)
    assert np.asarray(s.spec.normalizer["mean"]).shape == (8, 8, 1)
    flat = splits_of(source="digits")
    for key in ("mean", "variance"):
        pixels = np.asarray(s.spec.normalizer[key]).reshape(-1)
        np.testing.assert_allclose(pixels, flat.spec.normalizer[key])


def test_none_leaves_features_and_info_is_plain_python():
    raw = splits_of(source="iris", normalize="none")
    assert raw.x_train.max() > 4  # petal and sepal lengths in cm, untouched
    s = splits_of(source="iris")
    assert all(isinstance(v, int | float | str) for v in s.info.values())
    assert {"n_train", "n_val", "n_test", "normalize"} <= set(s.info)


def test_regression_targets_stay_raw_floats():
    raw = splits_of(source="diabetes", normalize="none")
    s = splits_of(source="diabetes", normalize="minmax")
    np.testing.assert_array_equal(raw.y_test, s.y_test)
    assert s.y_train.dtype == np.float32 and s.y_train.max() > 100  # progression score, unscaled


# --- generated sources ----------------------------------------------------------------------


def test_pass_the_class_follows_the_lecture_story_and_is_learnable():
    raw = splits_of(11, source="pass_the_class", normalize="none")
    x = np.concatenate([raw.x_train, raw.x_val, raw.x_test])
    lectures, hours = x[:, 0], x[:, 1]
    assert set(np.unique(lectures)) <= set(range(16)) and len(np.unique(lectures)) > 10
    assert hours.min() >= 0 and hours.max() <= 12 and len(np.unique(hours)) > 100
    assert raw.spec.feature_names == ("lectures_attended", "hours_on_project")
    assert raw.spec.class_names == ("fail", "pass")
    passed = np.concatenate([raw.y_train, raw.y_val, raw.y_test])
    assert 0.35 < passed.mean() < 0.65
    # Attending and working more helps: passers did both more on average.
    assert lectures[passed == 1].mean() > lectures[passed == 0].mean() + 2
    s = splits_of(11, source="pass_the_class")
    model = LogisticRegression().fit(s.x_train, s.y_train)
    assert model.score(s.x_test, s.y_test) > 0.75


def test_mnist1d_generates_offline_without_files_and_keeps_the_global_rng(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    s = splits_of(source="mnist1d", num_samples=100)
    assert np.random.random() == expected  # make_dataset reseeds numpy; we restore it
    assert list(tmp_path.iterdir()) == []
    assert np.bincount(np.concatenate([s.y_train, s.y_val, s.y_test])).tolist() == [10] * 10


def test_mnist1d_needs_ten_samples():
    with pytest.raises(ConfigError) as err:
        splits_of(source="mnist1d", num_samples=9)
    assert err.value.field == "data.num_samples"


def test_spirals_interleave():
    s = splits_of(source="spirals", n_samples=400, noise=0.0, turns=1.0, normalize="none")
    x, y = (
        np.concatenate([s.x_train, s.x_val, s.x_test]),
        np.concatenate([s.y_train, s.y_val, s.y_test]),
    )
    # Noise-free, green is red turned by half a turn: mirrored through the origin.
    angle = np.arctan2(x[:, 1], x[:, 0])
    radius = np.hypot(x[:, 0], x[:, 1])
    unwound = np.mod(angle - np.pi * y, 2 * np.pi)
    np.testing.assert_allclose(np.mod(2 * np.pi * radius, 2 * np.pi), unwound, atol=1e-4)
    assert radius.max() <= 1.0 + 1e-6


# --- CSV ------------------------------------------------------------------------------------


def write_csv(tmp_path, frame: pd.DataFrame, name="data.csv") -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def csv_frame(n=40, **columns):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.integers(0, 5, n)})
    for name, values in columns.items():
        frame[name] = values
    return frame


def load_csv_splits(path, target="label", **fields):
    return splits_of(0, source="csv", path=path, target=target, **fields)


def test_csv_string_labels_are_encoded_in_sorted_order(tmp_path):
    labels = np.array(["pear", "apple", "fig", "apple"] * 10)
    path = write_csv(tmp_path, csv_frame(label=labels))
    s = load_csv_splits(path, normalize="none")
    assert s.spec.task == "multiclass" and s.spec.class_names == ("apple", "fig", "pear")
    assert s.spec.feature_names == ("a", "b") and s.spec.input_shape == (2,)
    x = np.concatenate([s.x_train, s.x_val, s.x_test])
    y = np.concatenate([s.y_train, s.y_val, s.y_test])
    frame = csv_frame(label=labels)
    for row, label in zip(x[:5], y[:5], strict=True):
        (match,) = np.flatnonzero(np.isclose(frame["a"], row[0]))
        assert s.spec.class_names[label] == labels[match]


@pytest.mark.parametrize(
    "label, task, expected",
    [
        (np.arange(40) % 2 == 0, "auto", ("binary", ("False", "True"))),
        (np.arange(40) % 3 + 5, "auto", ("multiclass", ("5", "6", "7"))),
        (np.arange(40) % 2, "multiclass", ("multiclass", ("0", "1"))),
        (np.arange(40) * 7, "auto", ("regression", ())),  # 40 distinct integers
        (np.linspace(0, 1, 40), "auto", ("regression", ())),
    ],
)
def test_csv_task_inference(tmp_path, label, task, expected):
    s = load_csv_splits(write_csv(tmp_path, csv_frame(label=label)), task=task)
    assert (s.spec.task, s.spec.class_names) == expected
    assert s.y_train.dtype == (np.float32 if expected[0] == "regression" else np.int64)


def test_csv_regression_keeps_target_values(tmp_path):
    frame = csv_frame(label=np.linspace(10, 20, 40))
    s = load_csv_splits(write_csv(tmp_path, frame))
    assert sorted(np.concatenate([s.y_train, s.y_val, s.y_test]).tolist()) == pytest.approx(
        frame["label"].tolist()
    )


def _missing(tmp_path):
    return str(tmp_path / "nope.csv"), "label", {}


def _empty(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    return str(tmp_path / "empty.csv"), "label", {}


def _garbage(tmp_path):
    (tmp_path / "bin.csv").write_bytes(bytes(range(256)) * 20)
    return str(tmp_path / "bin.csv"), "label", {}


def _no_target(tmp_path):
    return write_csv(tmp_path, csv_frame(label=np.arange(40) % 2)), "lable", {}


def _many_columns(tmp_path):
    frame = pd.DataFrame(np.ones((20, 60)), columns=[f"col{i}" for i in range(60)])
    return write_csv(tmp_path, frame), "label", {}


def _text_feature(tmp_path):
    frame = csv_frame(label=np.arange(40) % 2, colour=["red", "blue"] * 20)
    return write_csv(tmp_path, frame), "label", {}


def _nan(tmp_path):
    frame = csv_frame(label=np.arange(40) % 2)
    frame.loc[3, "b"] = np.nan
    return write_csv(tmp_path, frame), "label", {}


def _few_rows(tmp_path):
    return write_csv(tmp_path, csv_frame(n=5, label=[0, 1, 0, 1, 0])), "label", {}


def _binary_three(tmp_path):
    return write_csv(tmp_path, csv_frame(label=np.arange(40) % 3)), "label", {"task": "binary"}


def _regress_text(tmp_path):
    frame = csv_frame(label=["x", "y"] * 20)
    return write_csv(tmp_path, frame), "label", {"task": "regression"}


def _one_class(tmp_path):
    return write_csv(tmp_path, csv_frame(label=["x"] * 40)), "label", {}


@pytest.mark.parametrize(
    "make, field, words",
    [
        (_missing, "data.path", ["no such file", "a path to an existing CSV file"]),
        (_empty, "data.path", ["empty"]),
        (_garbage, "data.path", ["cannot read"]),
        (_no_target, "data.target", ["'lable'", "allowed: a, b, label"]),
        (_many_columns, "data.target", ["col0, col1", "(40 more)"]),
        (_text_feature, "data.path", ["non-numeric", "colour", "allowed: numeric columns"]),
        (_nan, "data.path", ["missing values", "column 'b', line 5", "fill_missing"]),
        (_few_rows, "data.path", ["5 data rows"]),
        (_binary_three, "data.task", ["2 classes", "has 3"]),
        (_regress_text, "data.task", ["not numeric"]),
        (_one_class, "data.target", ["single value"]),
    ],
)
def test_csv_problems_are_one_line_config_errors(tmp_path, make, field, words):
    path, target, fields = make(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_csv_splits(path, target, **fields)
    line = str(err.value)
    assert err.value.field == field
    assert line.startswith(f"error: {field}: ") and "\n" not in line
    for word in words:
        assert word in line


def test_a_normaliser_json_of_an_earlier_run_still_scales_its_inputs():
    """Runs logged before the scaling moved into the model carry x' = x * weight + bias."""
    from tfdl.data.split import apply_normaliser

    raw = load_splits(config(source="digits", as_images=True, normalize="none"), 0)
    fitted = StandardScaler().fit(raw.x_train.reshape(len(raw.x_train), -1))
    old = {"weight": (1 / fitted.scale_).tolist(), "bias": (-fitted.mean_ / fitted.scale_).tolist()}
    scaled = apply_normaliser(raw.x_test, old)
    assert scaled.shape == raw.x_test.shape and scaled.dtype == np.float32
    np.testing.assert_allclose(
        scaled.reshape(len(scaled), -1),
        fitted.transform(raw.x_test.reshape(len(raw.x_test), -1)),
        atol=1e-5,
    )
    assert apply_normaliser(raw.x_test, None).dtype == np.float32
