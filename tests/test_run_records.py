"""What tells runs apart in the MLflow UI: names, the data they trained on, registered
models, system metrics."""

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

import tfdl
from tfdl.cli import main
from tfdl.config import validate
from tfdl.errors import ConfigError

from .conftest import TINY


def runs_of(experiment="test"):
    client = MlflowClient()
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def test_runs_of_one_seed_get_different_descriptive_names(store):
    """MLflow's default names come from Python's random, which the seed resets: two runs
    of one pipeline were both called the same. tfdl names them after what they train."""
    a, b = tfdl.train(TINY), tfdl.train(TINY)
    names = {r.info.run_id: r.info.run_name for r in runs_of()}
    assert names[a.run_id] != names[b.run_id]
    for name in names.values():
        assert name.startswith("deep_mlp-digits-"), name
    named = tfdl.train(TINY, {"tracking.run_name": "mine"})
    assert MlflowClient().get_run(named.run_id).info.run_name == "mine"


def test_a_run_records_each_split_it_trained_on_with_a_digest_of_its_content(store, tmp_path):
    frame = pd.DataFrame({"a": range(60), "b": [i % 7 for i in range(60)]})
    frame["label"] = (frame["a"] > 29).astype(int)
    csv = tmp_path / "table.csv"
    frame.to_csv(csv, index=False)
    pipeline = {**TINY, "data": {"source": "csv", "path": str(csv), "target": "label"}}
    first = tfdl.train(pipeline)
    frame.loc[45, "b"] = 100  # one value deep in the file changes
    frame.to_csv(csv, index=False)
    second = tfdl.train(pipeline)

    def inputs(run_id):
        found = MlflowClient().get_run(run_id).inputs.dataset_inputs
        return {i.tags[0].value: i.dataset for i in found}

    one, two = inputs(first.run_id), inputs(second.run_id)
    assert set(one) == {"training", "validation", "test"}
    sizes = {k: yaml.safe_load(d.profile)["features_shape"][0] for k, d in one.items()}
    assert sum(sizes.values()) == 60 and sizes["training"] > sizes["test"]
    assert all(d.name == "table.csv" and csv.as_uri() in d.source for d in one.values())
    assert "features" in one["training"].schema
    assert {k: d.digest for k, d in one.items()} != {k: d.digest for k, d in two.items()}
    again = tfdl.train(pipeline)  # the same content: the same digests
    assert {k: d.digest for k, d in inputs(again.run_id).items()} == {
        k: d.digest for k, d in two.items()
    }


def test_register_as_makes_each_run_a_new_version(store, write_pipeline, capsys):
    first = tfdl.train(TINY, {"tracking.register_as": "digits-mlp"})
    assert first.registered_model == "digits-mlp"
    path = write_pipeline({**TINY, "tracking": {"experiment": "test", "register_as": "digits-mlp"}})
    assert main(["train", str(path)]) == 0
    assert "registered as digits-mlp/2: serve it with tfdl serve --model digits-mlp/2" in (
        capsys.readouterr().out
    )
    (second,) = [r for r in runs_of() if r.info.run_id != first.run_id]
    assert first.model_version == "1"
    client = MlflowClient()
    version = client.get_model_version("digits-mlp", "2")
    assert version.run_id == second.info.run_id
    assert client.get_run(second.info.run_id).data.tags["tfdl.registered"] == "digits-mlp/2"


@pytest.mark.parametrize("name", ["a/b", "x:y", "m@champion", " ", ".."])
def test_a_name_the_registry_refuses_is_a_one_line_error_before_anything(name, store, capsys):
    with pytest.raises(ConfigError):
        validate({**TINY, "tracking": {"register_as": name}})
    assert main(["train", "pipelines/mlp.yaml", f"tracking.register_as='{name}'"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: tracking.register_as: ") and "allowed: " in line
    assert list(store.iterdir()) == []


def test_system_metrics_are_sampled_into_the_run_when_asked(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    slow = {"train.epochs": 3, "train.batch_size": 4, "tracking.system_metrics": True}
    on = tfdl.train(TINY, slow)
    off = tfdl.train(TINY)
    client = MlflowClient()
    sampled = [k for k in client.get_run(on.run_id).data.metrics if k.startswith("system/")]
    assert (
        "system/cpu_utilization_percentage" in sampled
        and "system/system_memory_usage_megabytes" in sampled
    )
    assert not [k for k in client.get_run(off.run_id).data.metrics if k.startswith("system/")]
