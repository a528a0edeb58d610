"""The MLflow UI, served by a real `mlflow server` and rendered by a headless Chromium,
shows two runs tfdl trained against that server: both names and the data set."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from .mlflow_server import mlflow_server

pytestmark = pytest.mark.slow

DATASET = "digits"
PIPELINE = {
    "data": {"source": DATASET},
    "model": {"arch": "deep_mlp", "units": [16]},
    "train": {"epochs": 1, "batch_size": 64, "verbose": 0},
    "tracking": {"experiment": "browser"},
}
# Two runs of one pipeline in one process (TensorFlow imported once); their ids on the
# last line of stdout.
TRAIN_TWICE = """
import json, sys
import tfdl
pipeline = json.loads(sys.argv[1])
print(json.dumps([tfdl.train(pipeline).run_id for _ in range(2)]))
"""
# The machine's network may be closed: no background fetches, updates or sync, or
# Chromium stalls on them. No sandbox: the tests may run as root.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Virtual time for the page's scripts, then a longer second try drawing every frame.
ATTEMPTS = [(20000, ()), (40000, ("--run-all-compositor-stages-before-draw",))]


def chromium() -> str | None:
    found = shutil.which("chromium")
    return found or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def dump_dom(browser: str, url: str, profile: Path, budget_ms: int, extra=()):
    """Chromium's run: the DOM (stdout) after the page's scripts ran for `budget_ms` of
    virtual time, in a fresh profile."""
    return subprocess.run(
        [
            browser,
            *CHROMIUM_FLAGS,
            *extra,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )


def page_text(dom: str) -> str:
    """What a reader sees: the DOM without scripts, styles and tags, spaces collapsed."""
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", text).split())


def rendered(browser: str, url: str, profiles: Path, wanted: list[str]) -> str:
    """The page's text once it shows everything in `wanted`; fails with what it showed."""
    seen = []
    for budget, extra in ATTEMPTS:
        done = dump_dom(browser, url, profiles / f"profile-{budget}", budget, extra)
        text = page_text(done.stdout)
        if all(w in text for w in wanted):
            return text
        seen.append(f"{text[:2000]}\n(chromium exited {done.returncode}: {done.stderr[-1000:]})")
    pytest.fail(f"{wanted} not all rendered at {url}; the page read:\n" + "\n---\n".join(seen))


def excerpt(text: str, word: str, width: int = 80) -> str:
    at = text.index(word)
    return text[max(0, at - width) : at + len(word) + width]


def test_the_ui_shows_two_trained_runs_and_their_data(tmp_path):
    browser = chromium()
    if browser is None:
        pytest.skip("chromium is not installed: make e2e installs it")
    folder = tmp_path / "server"
    folder.mkdir()
    with mlflow_server(folder) as server:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", TRAIN_TWICE, json.dumps(PIPELINE)],
            capture_output=True,
            text=True,
            timeout=150,
            cwd=tmp_path,
            env={**os.environ, "MLFLOW_TRACKING_URI": server.url},
        )
        assert done.returncode == 0, done.stderr[-3000:] + server.log.read_text()[-3000:]
        run_ids = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"\ntwo runs trained against the server: {time.monotonic() - started:.1f} s")

        client = MlflowClient(server.url)
        runs = [client.get_run(run_id) for run_id in run_ids]
        names = [run.info.run_name for run in runs]
        assert names[0] != names[1], names
        assert {run.info.status for run in runs} == {"FINISHED"}
        (experiment_id,) = {run.info.experiment_id for run in runs}
        # Each run's training split as the runs table's Dataset column shows it: the
        # source's name, the digest of the split's content, its context.
        cells = [
            f"{d.dataset.name} ({d.dataset.digest}) training"
            for run in runs
            for d in run.inputs.dataset_inputs
            if any(t.key == "mlflow.data.context" and t.value == "training" for t in d.tags)
        ]
        assert len(cells) == 2, cells
        assert all(cell.startswith(f"{DATASET} (") for cell in cells), cells

        # The experiment's bare URL opens its GenAI overview: the runs table is at /runs.
        url = f"{server.url}/#/experiments/{experiment_id}/runs"
        started = time.monotonic()
        text = rendered(browser, url, tmp_path, [*names, *cells])
        print(f"runs page rendered in {time.monotonic() - started:.1f} s: {url}")
        for name in names:
            print(f"run name {name!r}: ...{excerpt(text, name)}...")
        print(f"dataset {DATASET!r}: ...{excerpt(text, cells[0])}...")
        assert "2 matching runs" in text  # the table counted both runs, not just a title
        # One Dataset cell per run (the names hold "digits" too, so the cell is checked).
        for cell in set(cells):
            assert text.count(cell) == cells.count(cell), (cell, text.count(cell))
