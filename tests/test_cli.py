"""The real `tfdl` command: listing, errors without TensorFlow, a full training run."""

import signal
import subprocess
import sys
import time

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from tfdl import store as store_module
from tfdl.store import open_sqlite

from .conftest import DIVERGING, PROJECT, TINY, run_tfdl, start_tfdl


def test_list_names_every_architecture_dataset_pipeline_and_search():
    out = run_tfdl("list")
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line.strip()}
    # What needs the network once says so; what runs offline does not.
    assert lines["pipelines/mnist_cnn.yaml"].endswith("[downloads mnist once, or set data.path]")
    assert "download" not in lines["pipelines/mlp.yaml"]
    assert "downloaded once" in lines["cifar10"] and "download" not in lines["digits"]
    for name in (
        "perceptron",
        "deep_mlp",
        "digits",
        "mnist1d",
        "pass_the_class",
        "csv",
        "pipelines/mlp.yaml",
        "pipelines/perceptron.yaml",
        "tuning/mlp_grid.yaml",
    ):
        assert name in out.stdout


def test_help_list_and_errors_do_not_import_tensorflow(tmp_path):
    """Config errors answer at once: TensorFlow, MLflow and scikit-learn stay unloaded."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {source: digits}\nmodel: {arch: lenet}\n")
    code = (
        "import sys\nfrom tfdl.cli import main\n"
        f"codes = [main(['list']), main(['train', {str(bad)!r}])]\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'mlflow', 'sklearn') if m in sys.modules]\n"
        "print(codes, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT)
    assert out.stdout.strip().splitlines()[-1] == "[0, 2] []"


def test_bad_input_writes_nothing_to_the_store(tmp_path, write_pipeline):
    """Errors found only once the data is loaded still come before any run starts."""
    folder = tmp_path / "store"
    folder.mkdir()
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
    path = write_pipeline({**TINY, "model": {"arch": "perceptron"}})  # 10 classes, one neuron
    out = run_tfdl("train", path, env=env)
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(
        "error: model.arch: perceptron cannot learn the multiclass task of dataset 'digits'; "
        "allowed: multi_output_perceptron, single_layer_net, deep_mlp"
    )
    assert list(folder.iterdir()) == []


def test_default_store_is_the_project_folder_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert store_module.tracking_uri() == f"sqlite:///{PROJECT / 'mlruns' / 'mlflow.db'}"
    assert (
        store_module.artifact_root(store_module.tracking_uri()) == PROJECT / "mlruns" / "artifacts"
    )


@pytest.mark.slow
def test_train_end_to_end(tmp_path, write_pipeline):
    folder = tmp_path / "store"
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    path = write_pipeline({**TINY, "tracking": {"experiment": "e2e"}})
    out = run_tfdl(
        "train", path, "train.epochs=3", "model.units=[12,6]", env={"MLFLOW_TRACKING_URI": uri}
    )
    assert out.returncode == 0, out.stderr
    assert "finished: test_accuracy=" in out.stdout

    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("e2e").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["model.units"] == "[12, 6]" and run.data.params["train.epochs"] == "3"
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2, 3]
    assert {"test_loss", "test_accuracy"} <= set(run.data.metrics)
    assert {"config.yaml", "history.csv", "model_summary.txt"} <= {
        a.path for a in client.list_artifacts(run.info.run_id)
    }
    check = (
        "import mlflow, numpy as np, sys\n"
        f"mlflow.set_tracking_uri({uri!r})\n"
        f"m = mlflow.pyfunc.load_model('runs:/{run.info.run_id}/model')\n"
        "print(np.asarray(m.predict(np.zeros((3, 64), 'float32'))).shape)\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, cwd=tmp_path
    )
    assert loaded.stdout.strip().splitlines()[-1] == "(3, 10)", loaded.stderr


def wait_for_epochs(client, folder, n, timeout=180):
    """The run once it has logged `n` epochs."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(0.2)
        exp = (folder / "mlflow.db").exists() and client.get_experiment_by_name("test")
        found = client.search_runs([exp.experiment_id]) if exp else []
        if found and len(client.get_metric_history(found[0].info.run_id, "loss")) >= n:
            return found[0]
    raise AssertionError(f"the run never logged {n} epochs")


def slow_pipeline(write_pipeline, epochs):
    # batch 4, one step per call: ~300 trips through Python an epoch, so a signal lands
    # mid-training and writes and backups come every epoch or two
    train = {**TINY["train"], "epochs": epochs, "batch_size": 4, "steps_per_execution": 1}
    return write_pipeline({**TINY, "train": train})


@pytest.mark.slow
def test_sigterm_marks_the_run_killed_and_keeps_its_backup(tmp_path, write_pipeline):
    folder = tmp_path / "store"
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    open_sqlite(uri)  # polling a store the command is still creating would race it
    proc = start_tfdl("train", slow_pipeline(write_pipeline, 500), uri=uri)
    client = MlflowClient(uri)
    run = wait_for_epochs(client, folder, 1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "KILLED" in err and "--resume" in err
    run = client.get_run(run.info.run_id)
    assert run.info.status == "KILLED" and "interrupted" in run.data.tags["tfdl.error"]
    epochs = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) < 500
    backup = folder / "backups" / run.info.run_id / "backup"
    assert (backup / "latest.weights.h5").exists() and (backup / "training_metadata.json").exists()


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_into_the_same_run(tmp_path, write_pipeline):
    folder = tmp_path / "store"
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    open_sqlite(uri)
    epochs = 40  # an epoch here takes a fraction of a second: room for the kill to land
    proc = start_tfdl("train", slow_pipeline(write_pipeline, epochs), uri=uri)
    client = MlflowClient(uri)
    run = wait_for_epochs(client, folder, 2)
    proc.kill()  # SIGKILL: no handler runs, the run stays RUNNING
    proc.communicate(timeout=60)
    run_id = run.info.run_id
    assert client.get_run(run_id).info.status == "RUNNING"
    done = len(client.get_metric_history(run_id, "loss"))
    assert 2 <= done < epochs

    out = run_tfdl("train", "--resume", run_id, env={"MLFLOW_TRACKING_URI": uri})
    assert out.returncode == 0, out.stderr
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and "tfdl.error" not in run.data.tags
    for key in ("loss", "val_loss", "learning_rate"):
        assert [m.step for m in client.get_metric_history(run_id, key)] == list(
            range(1, epochs + 1)
        ), key
    history = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/history.csv")
    assert len(history.strip().splitlines()) == 1 + epochs
    assert not (folder / "backups" / run_id).exists()  # finished: nothing left to resume
    assert len(client.search_runs([run.info.experiment_id])) == 1


@pytest.mark.slow
def test_a_diverging_run_is_one_line_and_failed(tmp_path, write_pipeline):
    folder = tmp_path / "store"
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    path = write_pipeline({**DIVERGING, "tracking": {"experiment": "nan"}})
    out = run_tfdl("train", path, env={"MLFLOW_TRACKING_URI": uri})
    assert out.returncode == 1
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: training diverged: loss became") and "FAILED" in line
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("nan").experiment_id])
    assert run.info.status == "FAILED"


@pytest.mark.slow
def test_deterministic_runs_are_bit_identical(tmp_path, write_pipeline):
    """Two processes, same pipeline and seed: the same weights and metrics to the bit."""
    import numpy as np

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    path = write_pipeline(
        {
            **TINY,
            "model": {"arch": "deep_mlp", "units": [16], "dropout": 0.3},
            "train": {**TINY["train"], "deterministic": True},
        }
    )
    ids = []
    for _ in range(2):
        out = run_tfdl("train", path, env={"MLFLOW_TRACKING_URI": uri})
        assert out.returncode == 0, out.stderr
        ids.append(out.stdout.split()[1])
    client = MlflowClient(uri)
    losses = [[m.value for m in client.get_metric_history(i, "val_loss")] for i in ids]
    assert losses[0] == losses[1]
    mlflow.set_tracking_uri(uri)
    a, b = (mlflow.tensorflow.load_model(f"runs:/{i}/model").get_weights() for i in ids)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
