"""Pipeline validation, overrides and the one-line errors (no TensorFlow needed)."""

import pytest
from pydantic import ValidationError

from tfdl.cli import main
from tfdl.config import PipelineConfig, apply_overrides, load_pipeline, parse_override
from tfdl.errors import ConfigError

from .conftest import PROJECT, TINY


def test_a_short_file_is_a_complete_pipeline(write_pipeline):
    cfg = load_pipeline(write_pipeline({"data": {"source": "iris"}, "model": {"arch": "deep_mlp"}}))
    assert cfg.train.epochs == 20 and cfg.train.optimizer.name == "adam"
    assert cfg.train.optimizer.learning_rate == 0.001
    assert cfg.model.units == [64, 32] and cfg.callbacks.early_stopping is None
    assert cfg.tracking.experiment == "tfdl"


def test_overrides_are_parsed_as_yaml(write_pipeline):
    cfg = load_pipeline(
        write_pipeline(TINY),
        [
            "train.epochs=3",
            "model.units=[64,32]",
            "model.batch_norm=true",
            "train.optimizer.name=sgd",
            "train.optimizer.learning_rate=0.5",
            "tracking.run_name=x y",
        ],
    )
    assert cfg.train.epochs == 3 and cfg.model.units == [64, 32] and cfg.model.batch_norm is True
    assert cfg.train.optimizer.name == "sgd" and cfg.train.optimizer.learning_rate == 0.5
    assert cfg.tracking.run_name == "x y"


def test_override_creates_missing_sections():
    raw = apply_overrides({"data": {"source": "iris"}}, ["callbacks.early_stopping.patience=2"])
    assert raw["callbacks"] == {"early_stopping": {"patience": 2}}


def test_override_names_the_section_that_is_a_value():
    with pytest.raises(ConfigError) as err:
        apply_overrides({"train": {"epochs": 3}}, ["train.epochs.x=1"])
    assert err.value.field == "train.epochs"


def test_parse_override():
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert parse_override("a=") == (["a"], None)
    for bad in ["epochs", "=3", "a..b=1", "a.b c=1", "1a=2"]:
        with pytest.raises(ConfigError):
            parse_override(bad)


def test_optimizer_defaults_follow_its_name(write_pipeline):
    base = {**TINY, "train": {"epochs": 1}}
    for name, lr, extra in [
        ("sgd", 0.01, {}),
        ("nesterov", 0.01, {"momentum": 0.9}),
        ("adadelta", 1.0, {"rho": 0.95}),
        ("adamw", 0.001, {"weight_decay": 0.004}),
    ]:
        cfg = load_pipeline(write_pipeline(base), [f"train.optimizer.name={name}"])
        opt = cfg.train.optimizer
        assert opt.learning_rate == lr and all(getattr(opt, k) == v for k, v in extra.items())


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_infinite_and_nan_numbers_are_rejected(write_pipeline, value):
    with pytest.raises(ConfigError) as err:
        load_pipeline(write_pipeline(TINY), [f"train.optimizer.learning_rate={value}"])
    assert (
        err.value.line() == "error: train.optimizer.learning_rate: input should be a finite number"
    )


# Every kind of bad input, through the real entry point: one line, the field, what is allowed.
BAD = [
    # (pipeline content or None for a missing file, overrides, expected line prefix, in 'allowed')
    (None, [], "error: {missing}: no such file", "pipeline YAML"),
    ("data: [1, 2\n", [], "error: {path}: malformed YAML at line", None),
    ("- 1\n- 2\n", [], "error: {path}: the top level is a list", "data, model, train"),
    ({**TINY, "trian": {}}, [], "error: trian: unknown key", "data, model, train, callbacks"),
    (
        {**TINY, "model": {"arch": "deep_mlp", "unit": [3]}},
        [],
        "error: model.unit: unknown key",
        "units",
    ),
    ({**TINY, "train": {"epochz": 3}}, [], "error: train.epochz: unknown key", "epochs"),
    (
        TINY,
        ["train.optimizer.name=adam", "train.optimizer.momentum=0.9"],
        "error: train.optimizer.momentum: unknown key",
        "beta_1",
    ),
    (
        {**TINY, "callbacks": {"early_stopping": {"patiance": 1}}},
        [],
        "error: callbacks.early_stopping.patiance: unknown key",
        "patience",
    ),
    (TINY, ["train.epochs=abc"], "error: train.epochs: 'abc' is not an integer", "an integer"),
    (TINY, ["train.epochs=0"], "error: train.epochs: 0 is out of range", "> 0"),
    (TINY, ["train.batch_size=-4"], "error: train.batch_size: -4 is out of range", "> 0"),
    (TINY, ["model.dropout=1.5"], "error: model.dropout: 1.5 is out of range", "< 1.0"),
    (TINY, ["model.units=[16,-1]"], "error: model.units[1]: -1 is out of range", "> 0"),
    (TINY, ["model.units=[]"], "error: model.units: [] is out of range", "at least 1"),
    (TINY, ["model.units=16"], "error: model.units: 16 is not a list", "a list"),
    (TINY, ["model.arch=lenet"], "error: model.arch: unknown architecture 'lenet'", "deep_mlp"),
    ({**TINY, "model": {"units": [3]}}, [], "error: model.arch: missing", "perceptron"),
    (TINY, ["data.source=cifar"], "error: data.source: unknown dataset 'cifar'", "digits"),
    (
        TINY,
        ["train.optimizer.name=adamax"],
        "error: train.optimizer.name: unknown optimizer",
        "sgd",
    ),
    (TINY, ["model.activation=relux"], "error: model.activation: 'relux' is not allowed", "relu"),
    (
        TINY,
        ["train.loss=hinge"],
        "error: train.loss: 'hinge' is not allowed",
        "binary_crossentropy",
    ),
    (TINY, ["train.metrics=[f1]"], "error: train.metrics[0]: 'f1' is not allowed", "accuracy"),
    (
        TINY,
        ["train.optimizer.clipnorm=1", "train.optimizer.clipvalue=1"],
        "error: train.optimizer: set at most one of clipnorm",
        None,
    ),
    (TINY, ["data.val_fraction=0.5", "data.test_fraction=0.45"], "error: data: val_fraction", None),
    (TINY, ["train.epochs"], "error: train.epochs: bad override syntax", "dotted.path=value"),
    (TINY, ["train.epochs.x=1"], "error: train.epochs: is a value", "a mapping"),
    (TINY, ["model=3"], "error: model: 3 is not a mapping", "a mapping"),
    (TINY, ["tracking.experiment="], "error: tracking.experiment: None is not a string", None),
    (
        TINY,
        ['tracking.experiment=""'],
        "error: tracking.experiment: '' is too short",
        "at least 1 character",
    ),
    (TINY, [""], "error: '': bad override syntax", "dotted.path=value"),
    # A section chosen by its name is still a section: not "name: missing".
    (TINY, ["train.optimizer=[adam]"], "error: train.optimizer: ['adam'] is not a mapping", None),
    # scikit-learn takes no seed beyond 32 bits; it used to be blamed on data.val_fraction.
    (TINY, ["train.seed=4294967296"], "error: train.seed: 4294967296 is out of range", "< 42949"),
    (TINY, ["data.seed=4294967296"], "error: data.seed: 4294967296 is out of range", "< 42949"),
]


@pytest.mark.parametrize("content, overrides, prefix, allowed", BAD, ids=[b[2][:48] for b in BAD])
def test_bad_input_is_one_line_with_exit_2(
    content, overrides, prefix, allowed, write_pipeline, tmp_path, capsys
):
    path = tmp_path / "missing.yaml" if content is None else write_pipeline(content)
    code = main(["train", str(path), *overrides])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(prefix.format(missing=path, path=path)), lines[0]
    if allowed:
        assert "; allowed: " in lines[0] and allowed in lines[0].split("; allowed: ")[1], lines[0]


def test_a_config_that_is_no_mapping_is_named_as_a_whole():
    from tfdl.config import TuningConfig, validate

    with pytest.raises(ConfigError) as err:
        validate(None)
    assert err.value.line() == "error: pipeline: None is not a mapping; allowed: a mapping"
    with pytest.raises(ConfigError) as err:
        validate([], TuningConfig)
    assert err.value.line() == "error: search: [] is not a mapping; allowed: a mapping"


def test_usage_errors_are_one_line(capsys):
    assert main(["train"]) == 2
    assert main(["frobnicate"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("error: tfdl") for line in lines)


def test_schema_rejects_unknown_keys_everywhere():
    raw = {**TINY, "tracking": {"experiment": "x", "tag": {}}}
    with pytest.raises(ValidationError, match="tracking.tag"):
        PipelineConfig.model_validate(raw)


def test_the_readme_examples_are_valid():
    """The pipeline and the search shown in the README are ones tfdl accepts."""
    import re

    import yaml

    from tfdl.config import TuningConfig, validate

    pipeline, search = re.findall(r"```yaml\n(.*?)```", (PROJECT / "README.md").read_text(), re.S)
    assert validate(yaml.safe_load(pipeline)).model.arch == "deep_mlp"
    assert validate(yaml.safe_load(search), TuningConfig).space
