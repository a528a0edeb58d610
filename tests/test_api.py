"""The Python API: the README's snippet as a notebook runs it, and the same validation and
records as the command line."""

import os
import re
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

import tfdl
from tfdl.cli import main
from tfdl.errors import ConfigError

from .conftest import PROJECT, TINY


def readme_snippet() -> str:
    """The python block of the README's "From Python" section."""
    text = (PROJECT / "README.md").read_text()
    section = text.split("## From Python", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, re.S)
    return block


@pytest.mark.slow
def test_the_readme_snippet_runs_and_leaves_the_callers_matplotlib_alone(tmp_path):
    """A notebook has its own backend (here svg, as if chosen by the user): training,
    its pictures and a search must leave it as it was."""
    check = (
        "import matplotlib\n"
        "matplotlib.use('svg')\n"
        f"{readme_snippet()}\n"
        "import mlflow\n"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
        "run = mlflow.MlflowClient().get_run(result.run_id)\n"
        "assert run.info.status == 'FINISHED' and run.data.params['train.epochs'] == '3'\n"
        "assert len(result.history['val_loss']) == 3\n"
        "assert 'pictures/learning_curves.png' in {a.path for a in\n"
        "    mlflow.MlflowClient().list_artifacts(result.run_id, 'pictures')}\n"
        "print('trials', len(search.trials), 'best', search.best_score)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", check],
        cwd=PROJECT,
        env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    trials, best = out.stdout.strip().splitlines()[-1].split()[1::2]
    assert trials == "2" and 0.5 < float(best) <= 1.0


def test_load_pipeline_takes_a_file_or_a_mapping_and_overrides_as_list_or_mapping():
    from_file = tfdl.load_pipeline("pipelines/mlp.yaml", ["train.epochs=3", "model.units=[8]"])
    from_map = tfdl.load_pipeline(from_file.to_dict(), {"train.epochs": 3, "model.units": [8]})
    assert from_file == from_map and from_map.train.epochs == 3 and from_map.model.units == [8]


@pytest.mark.parametrize(
    "call, args",
    [
        (lambda: tfdl.train("pipelines/mlp.yaml", ["model.unitz=3"]), ["model.unitz=3"]),
        (lambda: tfdl.train("pipelines/mlp.yaml", {"train.epochs": 0}), ["train.epochs=0"]),
    ],
)
def test_bad_input_is_the_same_error_as_the_cli_and_writes_nothing(call, args, store, capsys):
    with pytest.raises(ConfigError) as raised:
        call()
    assert main(["train", "pipelines/mlp.yaml", *args]) == 2
    assert capsys.readouterr().err.strip() == raised.value.line()
    assert list(store.iterdir()) == []


def test_settings_are_named_as_the_api_names_them_and_as_flags_by_the_cli(store, capsys):
    with pytest.raises(ConfigError) as raised:
        tfdl.train(resume="0123abc")
    assert raised.value.field == "resume"
    assert main(["train", "--resume", "0123abc"]) == 2
    assert capsys.readouterr().err.startswith("error: --resume: no run '0123abc'")
    with pytest.raises(ConfigError, match="min_lr"):
        tfdl.find_learning_rate("pipelines/mlp.yaml", min_lr=1.0, max_lr=0.1)


def test_train_records_the_same_run_as_the_cli(store, write_pipeline, capsys):
    path = write_pipeline(TINY)
    assert main(["train", str(path)]) == 0
    result = tfdl.train(str(path))
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("test").experiment_id])
    by_api = next(r for r in runs if r.info.run_id == result.run_id)
    (by_cli,) = [r for r in runs if r.info.run_id != result.run_id]
    assert by_api.data.params == by_cli.data.params
    same = ("tfdl.arch", "tfdl.dataset", "tfdl.pipeline", "mlflow.source.type")
    assert {k: by_api.data.tags[k] for k in same} == {k: by_cli.data.tags[k] for k in same}
    assert set(by_api.data.metrics) == set(by_cli.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert artifacts == {a.path for a in client.list_artifacts(by_cli.info.run_id)}
    assert result.history["loss"] and set(result.test_metrics) == {"loss", "accuracy"}


def test_train_needs_a_pipeline_or_a_run_to_resume_said_once_for_both(store, capsys):
    with pytest.raises(ConfigError) as raised:
        tfdl.train()
    assert raised.value.field == "pipeline" and "resume RUN_ID" in raised.value.allowed
    assert main(["train"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: tfdl train PIPELINE: missing; allowed: a pipeline file, mapping or config; "
        "or --resume RUN_ID"
    )
    assert list(store.iterdir()) == []
