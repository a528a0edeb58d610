"""Real faults under a run: a disk that fills up under the store's backups. A small tmpfs
stands for the disk (mounting one needs root: skipped elsewhere)."""

import json
import shutil
import subprocess
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from tfdl.callbacks.backup import _matches
from tfdl.store import open_sqlite

from .conftest import TINY, run_tfdl, start_tfdl
from .test_cli import slow_pipeline, wait_for_epochs

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk():
    """Mount a tmpfs of a given size on a folder; unmounted after the test."""
    mounted = []

    def mount(folder, size):
        folder.mkdir(parents=True, exist_ok=True)
        out = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
        mounted.append(folder)

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder, leave: int) -> None:
    """Fill the disk under `folder` up to `leave` bytes free, as another program might."""
    free = shutil.disk_usage(folder).free
    with open(folder / "other-program.bin", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def test_a_disk_full_under_the_backups_fails_the_run_in_one_line_and_it_resumes(
    tmp_path, write_pipeline, small_disk
):
    folder = tmp_path / "store"
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    small_disk(folder / "backups", "4m")
    open_sqlite(uri)
    # Backups come at most store.LOG_MAX_S apart: enough epochs left after the disk fills
    # that one is certainly attempted on it.
    proc = start_tfdl("train", slow_pipeline(write_pipeline, 40), uri=uri)
    client = MlflowClient(uri)
    run_id = wait_for_epochs(client, folder, 2).info.run_id
    fill(folder / "backups", leave=256 << 10)  # room for a backup's file, not for the spare
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    (line,) = err.strip().splitlines()
    assert "No space left" in line or "no room" in line, line
    assert f"run {run_id} is marked FAILED" in line, line
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and "no room" in run.data.tags["tfdl.error"]
    done = [m.step for m in client.get_metric_history(run_id, "loss")]
    backup = folder / "backups" / run_id / "backup"
    stamp = json.loads((backup / "training_metadata.json").read_text())
    assert _matches(str(backup / "latest.weights.h5"), str(backup / "training_metadata.json"))
    assert stamp["epoch"] <= len(done) < 40  # every backed-up epoch is a logged one

    (folder / "backups" / "other-program.bin").unlink()  # the user makes room
    out = run_tfdl("train", "--resume", run_id, env={"MLFLOW_TRACKING_URI": uri})
    assert out.returncode == 0, out.stderr
    assert client.get_run(run_id).info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run_id, "loss")]
    assert steps == list(range(1, 41))  # each epoch once: nothing lost, nothing twice


def test_a_torn_backup_is_never_restored_from(tmp_path):
    """A weights file cut short (a full disk mid-write, kill -9): its epoch file no longer
    vouches for it, and the previous pair is restored instead."""
    import keras
    import numpy as np

    from tfdl.callbacks.backup import Backup

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    x, y = np.ones((8, 3)), np.zeros((8, 2))
    backup = Backup(str(tmp_path / "b"))
    backup.set_model(model)
    saved = []
    for epoch in range(2):  # two epochs, each backed up as fit would
        model.fit(x, y, epochs=1, verbose=0)
        backup.on_epoch_end(epoch)
        saved.append([w.copy() for w in model.get_weights()])
    weights = tmp_path / "b" / "latest.weights.h5"
    weights.write_bytes(weights.read_bytes()[:100])  # torn
    fresh = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    fresh.compile("sgd", "mse")
    restored = Backup(str(tmp_path / "b"))
    restored.set_model(fresh)
    restored.on_train_begin()
    assert fresh._initial_epoch == 1  # the previous pair: epoch 1, with its own weights
    for got, want in zip(fresh.get_weights(), saved[0], strict=True):
        np.testing.assert_array_equal(got, want)
    assert _matches(str(weights), str(tmp_path / "b" / "training_metadata.json"))


def test_a_disk_full_under_the_artifacts_fails_the_run_in_one_line(
    tmp_path, write_pipeline, small_disk
):
    """The model, pictures and history cannot be stored: FAILED with the reason, one line."""
    folder = tmp_path / "store"
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    open_sqlite(uri)
    small_disk(folder / "artifacts", "64k")  # room for the config, not for the model
    out = run_tfdl("train", write_pipeline(TINY), env={"MLFLOW_TRACKING_URI": uri})
    assert out.returncode == 1, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert "No space left" in line and "is marked FAILED" in line, line
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("test").experiment_id])
    assert run.info.status == "FAILED" and "No space left" in run.data.tags["tfdl.error"]


def test_pictures_that_cannot_be_written_are_an_error_not_a_skipped_picture(tmp_path, small_disk):
    import keras
    import pandas as pd

    from tfdl.pictures import run_pictures

    out = tmp_path / "pictures"
    small_disk(out, "64k")
    fill(out, leave=0)
    history = pd.DataFrame({"epoch": [1, 2], "loss": [1.0, 0.5], "val_loss": [1.1, 0.7]})
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    spec = SimpleNamespace(task="regression", input_shape=(2,), stream=None, table=False)
    with pytest.raises(OSError):  # the learning curves, the first picture, hit the full disk
        run_pictures(model, None, SimpleNamespace(spec=spec), history, out)


def test_a_search_state_file_that_cannot_be_written_whole_keeps_the_one_before(
    tmp_path, small_disk
):
    """Keras Tuner rewrites its oracle and trial files in place; cut short (a full disk
    here, kill -9 in a search stopped hard) they could not be read by the next run of the
    search. tfdl's searches write them whole or not at all."""
    from keras_tuner.src import utils as kt_utils

    import tfdl.search  # noqa: F401  (routes Keras Tuner's state files through it)

    folder = tmp_path / "search"
    small_disk(folder, "64k")
    state = folder / "oracle.json"
    kt_utils.save_json(str(state), {"trials": 1})
    with pytest.raises(OSError):
        kt_utils.save_json(str(state), {"trials": 2, "padding": "x" * (128 << 10)})
    assert kt_utils.load_json(str(state)) == {"trials": 1}
    assert [p.name for p in folder.iterdir()] == ["oracle.json"]  # no half-file left
