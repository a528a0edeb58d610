"""Many `tfdl train` processes writing to one sqlite store at once lose nothing."""

import pytest
from mlflow.tracking import MlflowClient

from .conftest import TINY, start_tfdl

PROCESSES = 8
EPOCHS = 2
# A tiny run: the test is about the store, so training should be a blink.
PIPELINE = {
    **TINY,
    "model": {"arch": "deep_mlp", "units": [8]},
    "train": {**TINY["train"], "epochs": EPOCHS, "batch_size": 128},
    "tracking": {"experiment": "crowd", "log_model": True},
}


@pytest.mark.slow
def test_eight_trainings_at_once_against_a_new_store_all_finish_complete(tmp_path, write_pipeline):
    """Started together on a store that does not exist yet: they race to create the
    database, its tables and the experiment, then to write runs, metrics and artifacts."""
    folder = tmp_path / "store"
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    path = write_pipeline(PIPELINE)
    procs = [start_tfdl("train", path, uri=uri) for _ in range(PROCESSES)]
    try:
        outputs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        assert "database is locked" not in err
    ids = {out.split()[1] for out, _ in outputs}  # "run ID finished: ..."

    client = MlflowClient(uri)
    (exp,) = [e for e in client.search_experiments() if e.name == "crowd"]
    found = client.search_runs([exp.experiment_id])
    assert {r.info.run_id for r in found} == ids and len(ids) == PROCESSES
    for run in found:
        run_id = run.info.run_id
        assert run.info.status == "FINISHED" and "tfdl.error" not in run.data.tags
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
            steps = [m.step for m in client.get_metric_history(run_id, key)]
            assert steps == list(range(1, EPOCHS + 1)), (run_id, key)
        assert {"test_loss", "test_accuracy"} <= set(run.data.metrics)
        assert run.data.params["model.units"] == "[8]"
        artifacts = {a.path for a in client.list_artifacts(run_id)}
        assert {
            "config.yaml",
            "data_spec.json",
            "history.csv",
            "model_summary.txt",
            "pictures",
        } <= artifacts, run_id
        history = (
            folder / "artifacts" / "crowd" / run_id / "artifacts" / "history.csv"
        ).read_text()
        assert len(history.strip().splitlines()) == 1 + EPOCHS
    models = client.search_logged_models([exp.experiment_id])
    assert sorted(m.source_run_id for m in models) == sorted(ids)  # every run's model
