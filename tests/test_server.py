"""tfdl against a real MLflow tracking server: the CLI trains, the REST API reads back."""

import time

import pytest

from .conftest import TINY, run_tfdl
from .mlflow_server import mlflow_server, post

pytestmark = pytest.mark.slow

SERVED = {
    **TINY,
    "model": {"arch": "deep_mlp", "units": [8]},
    "train": {"epochs": 2, "batch_size": 64, "verbose": 0},
    "tracking": {"experiment": "served", "run_name": "served-run"},
}


def test_a_cli_run_lands_on_the_tracking_server(tmp_path, write_pipeline):
    folder = tmp_path / "server"
    folder.mkdir()
    with mlflow_server(folder) as server:
        started = time.monotonic()
        done = run_tfdl("train", write_pipeline(SERVED), env={"MLFLOW_TRACKING_URI": server.url})
        assert done.returncode == 0, done.stderr[-3000:] + server.log.read_text()[-3000:]
        print(f"tfdl train against the server: {time.monotonic() - started:.1f} s")

        experiment = server.api("experiments/get-by-name", experiment_name="served")["experiment"]
        # The server chose where artifacts go: proxied through itself, not a local path.
        assert experiment["artifact_location"].startswith("mlflow-artifacts:")
        (run,) = server.search_runs(experiment["experiment_id"])
        run_id = run["info"]["run_id"]
        run = server.api("runs/get", run_id=run_id)["run"]
        assert run["info"]["status"] == "FINISHED"
        assert run["info"]["run_name"] == "served-run"
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        assert params["model.units"] == "[8]"
        assert params["train.epochs"] == "2"

        history = server.api("metrics/get-history", run_id=run_id, metric_key="val_loss")
        assert [m["step"] for m in history["metrics"]] == [1, 2]
        latest = {m["key"] for m in run["data"]["metrics"]}
        assert {"loss", "val_loss", "test_loss"} <= latest

        listed = server.api("artifacts/list", run_id=run_id)["files"]
        names = {f["path"] for f in listed}
        assert {"config.yaml", "history.csv", "model_summary.txt", "data_spec.json"} <= names
        # MLflow 3 logs the Keras model as a LoggedModel of the run, not as a run artifact.
        models = post(
            f"{server.url}/api/2.0/mlflow/logged-models/search",
            {"experiment_ids": [experiment["experiment_id"]]},
        )
        assert [m["info"]["source_run_id"] for m in models["models"]] == [run_id]
        # The bytes really went through the server to its artifacts destination.
        stored = {p.name for p in (folder / "artifacts").rglob("*") if p.is_file()}
        assert {"config.yaml", "history.csv", "model_summary.txt"} <= stored
