"""Epoch metrics written several epochs at a time, and backups on the same beat: every
epoch that finished is in the store exactly once, however the run ends or resumes, and a
backup never claims an epoch the store has not got."""

import errno
import json
import types

import keras
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

import tfdl.store
from tfdl import api, tracking
from tfdl.callbacks import backup as backup_module
from tfdl.callbacks.backup import Backup
from tfdl.cli import main
from tfdl.config import validate
from tfdl.tracking import liveness, outage, records
from tfdl.tracking.lifecycle import client, experiment_id

from .conftest import TINY

KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")


def pipeline(epochs, loop="fit"):
    return validate({**TINY, "train": {**TINY["train"], "epochs": epochs, "loop": loop}})


def steps(run_id, key="loss"):
    return [m.step for m in MlflowClient().get_metric_history(run_id, key)]


def only_run(experiment="test"):
    c = MlflowClient()
    (run,) = c.search_runs([c.get_experiment_by_name(experiment).experiment_id])
    return run


@pytest.fixture
def writes(monkeypatch):
    """Every log_batch carrying epoch metrics, as (steps, tags) in the order made; and the
    run ends, as ("end", status), in the same list."""
    made = []
    real_batch, real_end = MlflowClient.log_batch, MlflowClient.set_terminated

    def log_batch(self, run_id, metrics=(), params=(), tags=(), **kwargs):
        if any(m.step > 0 for m in metrics):
            made.append(([m.step for m in metrics], {t.key: t.value for t in tags}))
        return real_batch(self, run_id, metrics=metrics, params=params, tags=tags, **kwargs)

    def set_terminated(self, run_id, status=None, end_time=None):
        made.append(("end", status))
        return real_end(self, run_id, status, end_time)

    monkeypatch.setattr(MlflowClient, "log_batch", log_batch)
    monkeypatch.setattr(MlflowClient, "set_terminated", set_terminated)
    return made


def epoch_writes(made):
    """The epochs of each write (a write's steps repeat once per metric)."""
    return [sorted(set(s)) for s, _ in made if s != "end"]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def drained():
    """Wait for the writer thread to finish what it was handed."""
    records._WRITER.submit(lambda: None).result()


def new_run():
    return client().create_run(experiment_id("test")).info.run_id


class Raise(keras.callbacks.Callback):
    """Raise `error` at the end of epoch `at` (after the stack has seen the epoch)."""

    def __init__(self, at, error):
        super().__init__()
        self.at, self.error = at, error

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.at:
            raise self.error


# ------------------------------------------------------------------------------ the logger


def test_epochs_within_the_interval_are_one_write_and_a_late_one_goes_at_once(store, writes):
    run_id, clock = new_run(), Clock()
    log = tracking.epoch_logger(run_id, clock=clock)
    for epoch, t in enumerate([0.0, 0.05, 0.1, 0.15, 0.3, 1.0, 1.1]):
        clock.now = t
        log({"loss": 1.0 / (epoch + 1), "accuracy": 0.5, "note": "not a number"}, epoch)
        drained()
        if epoch == 0:
            assert epoch_writes(writes) == [[1]]  # the first epoch at once
            assert log.every_s == tfdl.store.LOG_EVERY_S == 0.25  # as it took no time
        if epoch == 3:
            assert epoch_writes(writes) == [[1]]  # epochs 2-4 held: within 0.25 s
    # 0.3: 0.3 s after the last write, epoch 5 takes 2-4 along; 1.0: epoch 6 goes at once;
    # 1.1: epoch 7 is held until wait.
    assert epoch_writes(writes) == [[1], [2, 3, 4, 5], [6]]
    log.wait()
    assert epoch_writes(writes) == [[1], [2, 3, 4, 5], [6], [7]]
    assert all(liveness.HEARTBEAT in tags for _, tags in writes)  # the heartbeat with each
    assert steps(run_id) == steps(run_id, "accuracy") == [1, 2, 3, 4, 5, 6, 7]
    values = [m.value for m in MlflowClient().get_metric_history(run_id, "loss")]
    np.testing.assert_allclose(values, [1 / n for n in range(1, 8)])
    assert "note" not in MlflowClient().get_run(run_id).data.metrics


def test_a_write_keeps_to_mlflows_limit_and_its_outage_record_says_what_it_carries(
    store, writes, monkeypatch
):
    carried = []
    real = outage.patient

    def patient(run_id, record, write, *args, **kwargs):
        carried.append((record, kwargs["metrics"], kwargs["tags"]))
        return real(run_id, record, write, *args, **kwargs)

    monkeypatch.setattr(outage, "patient", patient)
    run_id, clock = new_run(), Clock()
    log = tracking.epoch_logger(run_id, clock=clock)
    log({"loss": 0.0}, 0)  # written at once
    sizes = {1: 400, 2: 400, 3: 400, 4: 1500}  # epoch 4 alone is more than one write
    for epoch, n in sizes.items():
        log({f"m{i:04d}": float(epoch) for i in range(n)} | {"loss": float(epoch)}, epoch)
    log.wait()
    # Whole epochs together while they fit; the big one split; never over 1000 a write.
    assert epoch_writes(writes) == [[1], [2, 3], [4], [5], [5]]
    assert all(len(s) + len(tags) <= 1000 for s, tags in writes)
    for record, metrics, tags in carried:
        fields = ("key", "value", "timestamp", "step")
        assert record["call"] == "log_batch"
        assert record["metrics"] == [{f: getattr(m, f) for f in fields} for m in metrics]
        assert record["tags"] == {t.key: t.value for t in tags}
        assert liveness.HEARTBEAT in record["tags"]
    assert steps(run_id) == [1, 2, 3, 4, 5]
    assert len(MlflowClient().get_run(run_id).data.metrics) == 1 + 1500


def test_the_beat_keeps_writes_to_their_share_of_the_time():
    assert tfdl.store.beat(0.0) == tfdl.store.LOG_EVERY_S == 0.25  # cheap writes: every 0.25 s
    assert tfdl.store.beat(0.02) == pytest.approx(1.0)  # 20 ms a write: 2% of a second
    assert tfdl.store.beat(1.0) == tfdl.store.LOG_MAX_S == 5.0  # however slow, every 5 s
    assert tfdl.store.beat(0.0, every_s=0.1) == 0.1 and tfdl.store.beat(0.0, every_s=1e6) == 1e6


def test_writes_that_cost_more_come_less_often(store, writes, monkeypatch):
    run_id, clock = new_run(), Clock()
    real = outage.patient

    def patient(*args, **kwargs):  # each write takes 25 ms of the run's clock
        clock.now += 0.025
        return real(*args, **kwargs)

    monkeypatch.setattr(outage, "patient", patient)
    log = tracking.epoch_logger(run_id, clock=clock)
    for epoch in range(30):  # an epoch every 0.1 s
        clock.now = round(epoch * 0.1, 3)
        log({"loss": 1.0}, epoch)
        drained()
    # Epoch 1 at once, costing 25 ms: the next write 1.25 s later, not 0.25 s.
    assert log.every_s == pytest.approx(1.25)
    assert epoch_writes(writes) == [[1], list(range(2, 15)), list(range(15, 28))]
    log.wait()
    assert steps(run_id) == list(range(1, 31))


def test_upload_counts_the_epochs_a_kept_write_carries(store, monkeypatch, tmp_path):
    monkeypatch.setattr(outage, "STORE", tmp_path)
    run_id = new_run()
    metric = {"key": "loss", "value": 1.0, "timestamp": 0}
    outage.keep(run_id, {"call": "log_batch", "metrics": [metric | {"step": 1}], "tags": {}})
    several = [metric | {"step": s} for s in (2, 3, 4)]
    outage.keep(run_id, {"call": "log_batch", "metrics": several, "tags": {}})
    assert outage.upload(client()) == [(run_id, 4, None)]
    assert steps(run_id) == [1, 2, 3, 4]


# ------------------------------------------------------------------------------ a training


def test_a_run_of_many_tiny_epochs_logs_each_once_in_fewer_writes(store, writes, monkeypatch):
    monkeypatch.setattr(tfdl.store, "LOG_EVERY_S", 1.0)  # some epochs per write, on a busy machine
    result = api.train(pipeline(20))
    for key in KEYS:
        assert steps(result.run_id, key) == list(range(1, 21)), key
    logged = [m.value for m in MlflowClient().get_metric_history(result.run_id, "val_loss")]
    np.testing.assert_allclose(logged, result.history["val_loss"])
    made = epoch_writes(writes)
    assert 2 <= len(made) < 20 and made[0] == [1]
    assert sorted(s for w in made for s in w) == list(range(1, 21))  # no epoch twice
    assert all(liveness.HEARTBEAT in tags for s, tags in writes if s != "end")


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (KeyboardInterrupt(), "KILLED"),  # Ctrl-C; the CLI turns SIGTERM into the same
        (RuntimeError("loss is NaN"), "FAILED"),
        (OSError(errno.ENOSPC, "No space left on device"), "FAILED"),
    ],
    ids=["ctrl-c", "crash", "disk-full"],
)
@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_a_run_ended_by_an_error_has_every_finished_epoch_before_its_end(
    store, writes, monkeypatch, error, status, loop
):
    monkeypatch.setattr(tfdl.store, "LOG_EVERY_S", 1e6)  # after epoch 1, all held
    with pytest.raises(type(error)):
        api.train(pipeline(8, loop), callbacks=[Raise(5, error)])
    run = only_run()
    assert run.info.status == status
    for key in KEYS:
        assert steps(run.info.run_id, key) == [1, 2, 3, 4, 5], key
    # Epochs 2-5 were held when the error came: stored, then the run ended.
    *_, (held, _), end = writes
    assert sorted(set(held)) == [2, 3, 4, 5] and end == ("end", status)


def test_a_trial_ended_by_a_crash_has_every_finished_epoch(store, search_job, monkeypatch):
    monkeypatch.setattr(tfdl.store, "LOG_EVERY_S", 1e6)
    real = tracking.epoch_logger

    def crashing(run_id):
        log = real(run_id)

        def logger(logs, epoch):
            if epoch + 1 == 4:
                raise RuntimeError("injected crash at epoch 4")
            log(logs, epoch)

        return logger  # no wait of its own: the run's end stores what the logger holds

    monkeypatch.setattr(tracking, "epoch_logger", crashing)
    assert main(["tune", str(search_job(max_trials=1, epochs=6))]) == 1
    c = MlflowClient()
    found = c.search_runs([c.get_experiment_by_name("search").experiment_id])
    (trial,) = [r for r in found if r.data.tags.get("tfdl.kind") == "trial"]
    assert trial.info.status == "FAILED"
    assert steps(trial.info.run_id) == steps(trial.info.run_id, "val_loss") == [1, 2, 3]


# ------------------------------------------------------------------------------ backups


def backed_up(times, every_s, tmp_path, monkeypatch):
    """The stack's order by hand, one epoch per time of a fake clock: the logger, then the
    backup (every `every_s`) waiting for it before it commits. Returns (the run, each
    backup's epoch with the store's last epoch as it committed)."""
    clock = Clock()
    monkeypatch.setattr(backup_module, "time", types.SimpleNamespace(monotonic=clock))
    run_id = new_run()
    log = tracking.epoch_logger(run_id, clock=clock)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    commits = []

    def before_commit():
        log.wait()
        commits.append((backup._current_epoch, max(steps(run_id))))

    backup = Backup(str(tmp_path / "b"), before_commit, every_s=every_s)
    backup.set_model(model)
    backup.on_train_begin()
    for epoch, t in enumerate(times):
        clock.now = t
        log({"loss": 1.0}, epoch)
        backup.on_epoch_end(epoch)
    stamp = json.loads((tmp_path / "b" / "training_metadata.json").read_text())
    assert stamp["epoch"] == commits[-1][0]
    log.wait()
    assert steps(run_id) == list(range(1, len(times) + 1))
    return run_id, commits


def test_backups_on_the_loggers_beat_add_no_write(store, writes, monkeypatch, tmp_path):
    times = [0.0, 0.1, 0.2, 0.3, 0.4, 0.56, 0.6, 1.0, 1.05, 1.1]
    _, commits = backed_up(times, tfdl.store.LOG_EVERY_S, tmp_path, monkeypatch)
    # Epoch 1 (the first), then each epoch 0.25 s or more after the last backup: 4, 6, 8;
    # each as the logger writes it, so the backup's wait writes nothing of its own.
    assert commits == [(1, 1), (4, 4), (6, 6), (8, 8)]
    assert epoch_writes(writes) == [[1], [2, 3, 4], [5, 6], [7, 8], [9, 10]]


def test_a_backup_off_the_loggers_beat_stores_the_held_epochs_first(
    store, writes, monkeypatch, tmp_path
):
    times = [0.0, 0.05, 0.15, 0.2, 0.3, 0.6]
    _, commits = backed_up(times, 0.1, tmp_path, monkeypatch)
    assert commits == [(1, 1), (3, 3), (5, 5), (6, 6)]  # never ahead of the store
    assert epoch_writes(writes) == [[1], [2, 3], [4, 5], [6]]


def test_a_costly_backup_comes_less_often(store, writes, monkeypatch, tmp_path):
    clock = Clock()
    monkeypatch.setattr(backup_module, "time", types.SimpleNamespace(monotonic=clock))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    taken = []
    real_save = keras.Model.save_weights

    def save_weights(self, *args, **kwargs):  # each backup's weights take 10 ms of the clock
        clock.now += 0.01
        return real_save(self, *args, **kwargs)

    def before_commit():  # the logger's wait, 50 ms: the logger's own cost, not the backup's
        clock.now += 0.05
        taken.append(backup._current_epoch)

    monkeypatch.setattr(keras.Model, "save_weights", save_weights)

    backup = Backup(str(tmp_path / "b"), before_commit, every_s=lambda: 0.1)
    backup.set_model(model)
    backup.on_train_begin()
    for epoch in range(20):  # an epoch every 0.07 s
        clock.now = round(epoch * 0.07, 3)
        backup.on_epoch_end(epoch)
    # 10 ms a backup is 2% of 0.5 s: epoch 1, then every eighth epoch, not every other one.
    assert taken == [1, 9, 17]


def test_in_a_training_each_backup_follows_the_store(store, monkeypatch):
    monkeypatch.setattr(tfdl.store, "LOG_EVERY_S", 1.0)
    commits = []
    real_init = Backup.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        wait = self.before_commit

        def recorded():
            wait()
            commits.append((self._current_epoch, max(steps(only_run().info.run_id))))

        self.before_commit = recorded

    monkeypatch.setattr(Backup, "__init__", init)
    api.train(pipeline(15))
    assert commits[0][0] == 1 and 1 <= len(commits) < 15
    assert all(epoch <= logged for epoch, logged in commits)


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_a_run_killed_past_its_backup_resumes_with_each_epoch_once(store, monkeypatch, loop):
    monkeypatch.setattr(tfdl.store, "LOG_EVERY_S", 1e6)  # one backup, of epoch 1
    with pytest.raises(KeyboardInterrupt):
        api.train(pipeline(8, loop), callbacks=[Raise(5, KeyboardInterrupt())])
    run_id = only_run().info.run_id
    assert only_run().info.status == "KILLED" and steps(run_id) == [1, 2, 3, 4, 5]
    backup = tfdl.store.run_dir(run_id) / "backup" / "training_metadata.json"
    assert json.loads(backup.read_text())["epoch"] == 1  # behind the store by 4 epochs

    resumed = api.train(resume=run_id)
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED" and "tfdl.error" not in run.data.tags
    assert len(resumed.history["loss"]) == 7  # epochs 2-8 again, 2-5 not logged twice
    for key in KEYS:
        assert steps(run_id, key) == list(range(1, 9)), key
    assert len(tracking.history_frame(run_id, ["loss"])) == 8
    assert not tfdl.store.run_dir(run_id).exists()
