"""Models named by the registry, `--model NAME@ALIAS` or `--model NAME/VERSION`, wherever
a command takes `--run-id`; each bad reference is one line, before anything is written."""

import os
import subprocess
import sys

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tfdl import train
from tfdl.cli import main
from tfdl.config import validate
from tfdl.tracking import find_model

from .conftest import PROJECT, TINY, free_port

ALLOWED = "allowed: --run-id RUN_ID, --model NAME@ALIAS or --model NAME/VERSION"
REFS = "allowed: NAME@ALIAS or NAME/VERSION of a registered model"


@pytest.fixture
def registered(store):
    """A trained run whose model is versions 1 (registered by the run) and 2 of `digits`,
    `champion` on 2, and version 1 of a second registered model, `other`."""
    run = train(validate({**TINY, "tracking": {"experiment": "test", "register_as": "digits"}}))
    assert run.model_version == "1"
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    for name in ("digits", "other"):
        mlflow.register_model(f"runs:/{run.run_id}/model", name)
    MlflowClient().set_registered_model_alias("digits", "champion", "2")
    return run


def store_contents():
    """What the store holds: runs, model versions, artifact files."""
    c = MlflowClient()
    runs = sorted(
        r.info.run_id for r in mlflow.search_runs(search_all_experiments=True, output_format="list")
    )
    versions = sorted((v.name, v.version) for v in c.search_model_versions())
    root = os.path.dirname(os.environ["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///"))
    files = sorted(
        os.path.join(d, f) for d, _, fs in os.walk(os.path.join(root, "artifacts")) for f in fs
    )
    return runs, versions, files


def commands(tmp_path):
    """Each command that takes a model, with its other required settings."""
    rows = tmp_path / "rows.npy"
    np.save(rows, np.zeros((2, 64)))
    return {
        "evaluate": [],
        "predict": ["--input", str(rows)],
        "serve": ["--port", str(free_port())],
        "export": ["--output", str(tmp_path / "exported")],
    }


def test_bad_references_are_one_line_and_write_nothing(registered, tmp_path, capsys):
    uri = os.environ["MLFLOW_TRACKING_URI"]
    known = "allowed: digits@champion, digits/1, digits/2"
    cases = [
        (
            ["--model", "nope@champion"],
            f"error: --model: no registered model 'nope' in the "
            f"store {uri}; allowed: digits, other",
        ),
        (["--model", "digits/7"], f"error: --model: model 'digits' has no version 7; {known}"),
        (
            ["--model", "digits@best"],
            f"error: --model: model 'digits' has no alias 'best'; {known}",
        ),
        (["--model", "digits"], f"error: --model: 'digits' names no model version; {REFS}"),
        (["--model", "digits/one"], f"error: --model: 'digits/one' names no model version; {REFS}"),
        (["--model", "@champion"], f"error: --model: '@champion' names no model version; {REFS}"),
    ]
    before = store_contents()
    for command, extra in commands(tmp_path).items():
        for args, line in [
            *cases,
            (
                ["--run-id", registered.run_id, "--model", "digits/1"],
                f"error: tfdl {command}: takes --run-id or --model, not both; {ALLOWED}",
            ),
            ([], f"error: tfdl {command}: needs --run-id or --model; {ALLOWED}"),
        ]:
            assert main([command, *args, *extra]) == 2, (command, args)
            assert capsys.readouterr().err.strip().splitlines() == [line], (command, args)
    assert store_contents() == before
    assert not (tmp_path / "exported").exists()


def test_a_reference_names_its_version_and_the_run_that_trained_it(registered):
    run, uri = find_model("digits@champion")
    assert (run.info.run_id, uri) == (registered.run_id, "models:/digits/2")
    run, uri = find_model("models:/other/1")
    assert (run.info.run_id, uri) == (registered.run_id, "models:/other/1")


def test_evaluate_by_version_prints_what_evaluate_by_run_prints(registered, capsys):
    assert main(["evaluate", "--run-id", registered.run_id]) == 0
    by_run = capsys.readouterr().out
    assert main(["evaluate", "--model", "digits/1"]) == 0
    assert capsys.readouterr().out == by_run
    assert main(["evaluate", "--model", "digits@champion", "--split", "val"]) == 0
    assert "val_loss\t" in capsys.readouterr().out


def test_a_store_without_models_says_so_and_stays_absent(tmp_path):
    folder = tmp_path / "none"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
    code = (
        "import sys\nfrom tfdl.cli import main\n"
        "codes = [main(['serve', '--model', 'digits@champion']),\n"
        "         main(['serve', '--run-id', 'x'])]\n"
        "print(codes, 'tensorflow' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT, env=env
    )
    assert out.stdout.strip().splitlines()[-1] == "[2, 2] False"  # TensorFlow never loaded
    first, second = out.stderr.strip().splitlines()
    assert first == (
        f"error: --model: no registered model 'digits': the store {env['MLFLOW_TRACKING_URI']} "
        "does not exist; allowed: train a pipeline with tracking.register_as: NAME first"
    )
    assert second.startswith("error: --run-id: no run 'x'")
    assert not folder.exists()


def test_a_taken_port_is_refused_before_the_server_starts(registered, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--run-id", registered.run_id, "--port", str(port)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: --port: 127.0.0.1:{port} is in use; allowed: a free port"
    ]


def test_a_run_without_a_model_is_refused_before_serving_or_exporting(store, tmp_path, capsys):
    run = train(validate({**TINY, "tracking": {"experiment": "test", "log_model": False}}))
    line = (
        f"error: --run-id: run {run.run_id} has no logged model; "
        "allowed: a FINISHED run trained with tracking.log_model: true"
    )
    for command, extra in commands(tmp_path).items():
        assert main([command, "--run-id", run.run_id, *extra]) == 2, command
        assert capsys.readouterr().err.strip().splitlines() == [line], command
    assert not (tmp_path / "exported").exists()
