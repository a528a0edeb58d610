"""A property of the whole command line: whatever argv a user types, built from the real
commands, their real flags and plausible values (good, bad, hostile), `tfdl` answers
with exit 0, or one line starting `error:` and exit 2; never a traceback, never a crash.

Commands run in this process against an empty store in a temporary folder. Loading
TensorFlow (or starting a search's processes) is where input checking ends, so it is
replaced by a marker exception: an argv that gets that far was accepted (the guard then
reports the marker in one line).
"""

import argparse
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tfdl.cli as cli
from tfdl import runtime, search_workers
from tfdl.data import keras_sets, shapes

from .conftest import PROJECT

PIPELINE = str(PROJECT / "pipelines" / "mlp.yaml")
SEARCH = str(PROJECT / "tuning" / "mlp_random.yaml")
RUN_ID = "0123456789abcdef0123456789abcdef"
WORDS = ["", "x", "-", "nowhere.yaml", PIPELINE, SEARCH, RUN_ID, "é", "a b", "../..", "x.csv"]
NUMBERS = ["0", "1", "-1", "3", "65535", "70000", "99999999999999999999", "1e-3", "inf", "nan"]
OVERRIDES = [
    "train.epochs=0",
    "train.epochs=abc",
    "train.epochs=1e30",
    "model.units=[",
    "model.units=[8, -1]",
    "data.source=mnist",
    "data.path=/nowhere",
    "tracking.tags={'a!': b}",
    "tracking.experiment=''",
    "train.optimizer={name: sgd, name: adam}",
    "=",
    "a.b=1",
    "max_trials=0",
    "space={}",
]


class Accepted(Exception):
    """The input passed every check: the command was about to load TensorFlow."""


def _accept(*args, **kwargs):
    raise Accepted("input accepted")


def _mlflow_ui(path, argv):
    """tfdl ui hands over to MLflow's UI: only with a port it can listen on."""
    port = int(argv[argv.index("--port") + 1])
    if not 1 <= port <= 65535:
        raise RuntimeError(f"mlflow ui would be started on port {port}")
    _accept()


def actions():
    """{command: [(option strings or None for a positional, nargs, choices)]}."""
    commands = cli._parser().commands.choices
    out = {}
    for name, parser in commands.items():
        out[name] = [
            (a.option_strings or None, a.nargs, a.choices)
            for a in parser._actions
            if not isinstance(a, argparse._HelpAction)
        ]
    return out


ACTIONS = actions()


@st.composite
def argv(draw):
    command = draw(st.sampled_from(sorted(ACTIONS)))
    out = [command]
    for options, nargs, choices in ACTIONS[command]:
        if not draw(st.booleans()):
            continue
        values = list(choices) if choices else [*WORDS, *NUMBERS]
        if options is None:  # a positional: the pipeline, the folder, the overrides
            count = draw(st.integers(0, 3)) if nargs in ("*", "+") else 1
            pool = OVERRIDES + values if nargs in ("*", "+") else values
            out += [draw(st.sampled_from(pool)) for _ in range(count)]
        elif nargs == 0:  # a switch
            out.append(options[-1])
        else:
            out += [options[-1], draw(st.sampled_from(values))]
    if draw(st.integers(0, 9)) == 0:
        out.insert(draw(st.integers(0, len(out))), draw(st.sampled_from(["--bogus", "-x", "--"])))
    return out


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # tfdl tune --chief/--worker sets Keras Tuner's variables in this process: removed
    # after the test, or a later search in this process would wait for workers.
    for name in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
        monkeypatch.setenv(name, "")  # recorded as absent before: unset again afterwards
        monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    monkeypatch.setattr(runtime, "import_tensorflow", _accept)
    # A search in child processes (--workers, or more trials than worker_trials) starts
    # them where this process would load TensorFlow: that is where its checks end too.
    monkeypatch.setattr(search_workers, "_children", _accept)
    monkeypatch.setattr(os, "execv", _mlflow_ui)  # tfdl ui would become the MLflow UI
    monkeypatch.setattr(shapes, "_write", _accept)  # checked: the pictures are not needed
    monkeypatch.setattr(keras_sets, "reachable", lambda host: False)  # loopback only
    return tmp_path


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(args=argv())
def test_any_argv_is_answered_in_one_line_never_a_traceback(sandbox, capsys, args):
    code = cli.main(args)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, (args, err)
    if code == 0:
        return
    assert code in (1, 2), (args, code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), (args, err)
    # Exit 1 is a crash: only the marker may cause one here. Input a command cannot take
    # is exit 2, whatever it is.
    assert code == 2 or "input accepted" in lines[0], (args, err)
