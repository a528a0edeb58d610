"""The one guard every command runs in: exit codes, one line, runs never left RUNNING."""

import signal
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tfdl.cli import _flags, _parser, guarded, main
from tfdl.errors import ConfigError
from tfdl.store import open_sqlite

from .conftest import TINY, start_tfdl


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_lr_find_kills_its_run_with_one_line(signum, tmp_path, write_pipeline):
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    open_sqlite(uri)
    client = MlflowClient(uri)
    path = write_pipeline({**TINY, "train": {**TINY["train"], "batch_size": 4}})
    # Rates too small to diverge, far more steps than the test waits for.
    sweep = ["--min-lr", "1e-7", "--max-lr", "1e-6", "--steps", "100000"]
    proc = start_tfdl("lr-find", path, *sweep, uri=uri)

    def sweeping():
        exp = client.get_experiment_by_name("test")
        runs = client.search_runs([exp.experiment_id]) if exp else []
        # config.yaml is the run's first record: past it, the sweep itself is running.
        if runs and "config.yaml" in {a.path for a in client.list_artifacts(runs[0].info.run_id)}:
            return runs[0]
        return None

    deadline, run = time.time() + 120, None
    while run is None and time.time() < deadline and proc.poll() is None:
        run = sweeping()
        time.sleep(0.2)
    assert run is not None, proc.communicate()[1]
    time.sleep(8)  # well into the sweep's steps, its first compile done even on a busy machine
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    run_id = run.info.run_id
    assert proc.returncode == 130
    assert err.strip().splitlines() == [
        f"interrupted: run {run_id} is marked KILLED; run the sweep again"
    ]
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["tfdl.error"].startswith("interrupted")
    assert "/100000" in out  # the sweep's progress bar was showing its steps


def test_an_interrupt_before_any_run_exits_130_with_one_line(capsys):
    def interrupted():
        raise KeyboardInterrupt

    assert guarded("evaluate", interrupted) == 130
    assert capsys.readouterr().err.strip().splitlines() == [
        "interrupted before a run started: nothing was recorded"
    ]


def test_a_crash_without_a_run_saves_its_traceback_and_says_where(capsys):
    def crash():
        raise ValueError("first line\nsecond line\nlast line")

    assert guarded("predict", crash) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: tfdl predict failed: ValueError: first line ... last line; ")
    saved = Path(line.split("traceback in ")[1])
    try:
        text = saved.read_text()
        assert text.startswith("Traceback") and "in crash" in text
    finally:
        saved.unlink()


def test_a_setting_is_named_by_the_flag_of_the_running_command_only(capsys):
    flags = _flags(_parser(), "lr-find")
    assert flags["min_lr"] == "--min-lr" and flags["steps"] == "--steps"
    assert "steps" not in _flags(_parser(), "tune")

    def refused():
        raise ConfigError("steps", "3 is too few", ">= 10")

    assert guarded("lr-find", refused, flags) == 2
    assert guarded("tune", refused, _flags(_parser(), "tune")) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "error: --steps: 3 is too few; allowed: >= 10",
        "error: steps: 3 is too few; allowed: >= 10",
    ]


def test_settings_named_in_what_is_allowed_are_spelled_as_flags_too(capsys):
    def refused():
        raise ConfigError("min_lr", "1 to 0.1", "0 < min_lr < max_lr", ("min_lr", "max_lr"))

    assert guarded("lr-find", refused, _flags(_parser(), "lr-find")) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --min-lr: 1 to 0.1; allowed: 0 < --min-lr < --max-lr"


def test_every_command_runs_in_the_guard(monkeypatch, capsys):
    """Each command, made to crash at its first step, answers with the guard's one line."""
    import tfdl.cli as cli

    commands = {
        "train": ["pipelines/mlp.yaml"],
        "tune": ["tuning/mlp_random.yaml"],
        "lr-find": ["pipelines/mlp.yaml"],
        "evaluate": ["--run-id", "x"],
        "predict": ["--run-id", "x", "--input", "x.csv"],
        "serve": ["--run-id", "x"],
        "export": ["--run-id", "x", "--output", "x"],
        "generate": ["--run-id", "x"],
        "compare": [],
        "runs": [],
        "list": [],
        "ui": [],
        "make-example-data": ["shapes", "x"],
    }
    names = {"lr-find": "_lr_find", "make-example-data": "_make_example_data"}
    for command, args in commands.items():

        def crash(args, command=command):
            raise RuntimeError(f"{command} broke")

        monkeypatch.setattr(cli, names.get(command, f"_{command}"), crash)
        assert main([command, *args]) == 1, command
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert "failed: RuntimeError: " + f"{command} broke; " in line, line
        Path(line.split("traceback in ")[1]).unlink()
    assert set(commands) == set(_parser().commands.choices)  # every command is covered
