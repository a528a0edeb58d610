"""`make install` refuses a Python too old for tfdl in one line, before making anything."""

import subprocess

import pytest

from .conftest import PROJECT

SHIPPED = (
    "tfdl",
    "tests",
    "pipelines",
    "tuning",
    "benchmarks",
    "Makefile",
    "pyproject.toml",
    "constraints.txt",
)


def test_make_install_refuses_an_old_python_before_making_the_venv(tmp_path):
    old = tmp_path / "python3.9"
    old.write_text("#!/bin/sh\necho 3.9\nexit 1\n")  # what the version check gets from 3.9
    old.chmod(0o755)
    venv = tmp_path / "venv"
    out = subprocess.run(
        ["make", "-s", "install", f"PYTHON={old}", f"VENV={venv}"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert out.stderr.strip().splitlines()[0] == (
        f"error: tfdl needs Python 3.11+; found 3.9 at {old} (set PYTHON=python3.11)"
    )
    assert not venv.exists()


def test_no_file_of_the_project_is_hidden_from_git_by_an_ignore_rule():
    # A clean clone must hold every module, pipeline and test the checkout runs.
    if not (PROJECT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(
        ["git", "ls-files", "--others", "--ignored", "--exclude-standard", "--", *SHIPPED],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    hidden = [f for f in out.stdout.splitlines() if "__pycache__" not in f]
    assert hidden == []


def test_the_suite_runs_on_the_versions_constraints_txt_pins():
    # make install installs through constraints.txt: what passes here is what a fresh
    # install gets tomorrow. A release nobody tested shows up here first.
    from importlib.metadata import PackageNotFoundError, version

    pins = {}
    for line in (PROJECT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            pins[name.strip().lower()] = pinned.strip()
    assert {"tensorflow", "keras", "mlflow", "keras-tuner", "pydantic"} <= set(pins)
    differ = {}
    for name, pinned in pins.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != pinned:
            differ[name] = (pinned, installed)
    assert differ == {}
