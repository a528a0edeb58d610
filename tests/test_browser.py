"""The MLflow UI, served and rendered by a headless Chromium, shows a run of the store."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from .mlflow_server import mlflow_server

pytestmark = pytest.mark.slow

RUN_NAME = "needle-run-6s191"
# The machine's network is closed: no background fetches, updates or sync, or Chromium
# stalls on them. No sandbox: the tests may run as root.
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


def chromium() -> str | None:
    found = shutil.which("chromium")
    return found or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def dump_dom(browser: str, url: str, profile: Path, budget_ms: int, extra=()) -> str:
    """The DOM after the page's scripts ran for `budget_ms` of virtual time."""
    done = subprocess.run(
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
        timeout=240,
    )
    return done.stdout


def page_text(dom: str) -> str:
    """What a reader sees: the DOM without scripts, styles and tags, spaces collapsed."""
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", text).split())


def test_the_ui_lists_a_run_by_name(tmp_path):
    browser = chromium()
    if browser is None:
        pytest.skip("chromium is not installed: make e2e installs it")
    folder = tmp_path / "server"
    folder.mkdir()
    with mlflow_server(folder) as server:
        client = MlflowClient(server.url)
        experiment_id = client.create_experiment("browser")
        run = client.create_run(experiment_id, run_name=RUN_NAME)
        client.log_param(run.info.run_id, "model.arch", "deep_mlp")
        client.set_terminated(run.info.run_id)

        # The experiment's bare URL opens its GenAI overview: the runs table is at /runs.
        url = f"{server.url}/#/experiments/{experiment_id}/runs"
        attempts = [(20000, ()), (40000, ("--run-all-compositor-stages-before-draw",))]
        texts = []
        for budget, extra in attempts:
            text = page_text(dump_dom(browser, url, tmp_path / f"profile-{budget}", budget, extra))
            texts.append(text)
            if RUN_NAME in text:
                break
        else:
            seen = "\n---\n".join(t[:1500] for t in texts)
            pytest.fail(f"{RUN_NAME!r} not rendered at {url}; the page read:\n{seen}")
        assert "1 matching run" in text  # the table counted the run, not just a title
