"""What a run records: its start (parameters, config, data spec), its epochs, its end
(test metrics, history, pictures, the model), a learning-rate sweep, a finished search."""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import json
import os
import secrets
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from mlflow.entities import Metric, RunTag
from mlflow.exceptions import RestException

from tfdl import store
from tfdl.config import flatten
from tfdl.store import PROJECT, shared, tracking_uri
from tfdl.tracking import liveness, outage
from tfdl.tracking.lifecycle import before_end, client, log_params

# The thread that stores epoch metrics. Ours, not MLflow's async queue: ending a run shuts
# that queue down and joins its threads, which cost about a second per run (a search's trials).
_WRITER = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tfdl-metrics")
MAX_BATCH = 1000  # MLflow's limit on the metrics and tags of one log_batch
INPUT_ATTEMPTS = 3  # logging a run's data sets, which runs starting together may race


def epoch_logger(run_id: str, clock=time.monotonic) -> EpochLogger:
    """A callable logging every number of Keras's epoch logs to run `run_id`, step = epoch
    number (1-based). The run is named, not taken from MLflow's active-run stack, so no
    metric of one trial can land in another's run. `clock`: seconds, for store.LOG_EVERY_S."""
    return EpochLogger(run_id, clock)


class EpochLogger:
    """`log(logs, epoch)` holds the epoch until `every_s` has passed since the last write,
    then hands all it holds to the writer thread in one write (in the background, so the
    write overlaps the next epoch); the first epoch goes at once. `every_s` is
    store.LOG_EVERY_S, or longer when writes cost more than store.WRITE_SHARE of it.
    `log.wait()` writes what is held and returns once every epoch handed over is stored.
    The run's end waits too (lifecycle.before_end): a run ended KILLED or FAILED has every
    epoch that finished."""

    def __init__(self, run_id: str, clock=time.monotonic):
        self.run_id, self.clock, self.beat = run_id, clock, store.Beat()
        self._client = client()
        self._held: list[list[Metric]] = []  # epochs not yet handed to the writer
        self._pending: list[concurrent.futures.Future] = []  # writes under way
        before_end(run_id, self.wait)

    @property
    def every_s(self) -> float:
        return self.beat.every_s

    def __call__(self, logs: dict, epoch: int) -> None:
        now = int(time.time() * 1000)
        numbers = [(k, float(v)) for k, v in logs.items() if _is_number(v)]
        self._held.append([Metric(k, v, now, epoch + 1) for k, v in numbers])
        if self.beat.due(self.clock()):
            self._write()

    def wait(self) -> None:
        self._write()
        first = None
        while self._pending:  # every write is waited for; the first error is raised
            error = self._pending[0].exception()
            self._pending.pop(0)
            first = first or error
        if first is not None:
            raise first

    def _write(self) -> None:
        if not self._held:
            return
        epochs, self._held, self.beat.last = self._held, [], self.clock()
        alive = [RunTag(liveness.HEARTBEAT, liveness.beat())]  # in the same write: free
        for metrics in _batches(epochs, MAX_BATCH - len(alive)):
            # What the write carries, kept on disk if the tracking server stays away.
            fields = ("key", "value", "timestamp", "step")
            record = {
                "call": "log_batch",
                "metrics": [{f: getattr(m, f) for f in fields} for m in metrics],
                "tags": {t.key: t.value for t in alive},
            }
            write = (outage.patient, self.run_id, record, self._client.log_batch, self.run_id)
            self._pending.append(_WRITER.submit(self._timed, *write, metrics=metrics, tags=alive))

    def _timed(self, write, *args, **kwargs):
        start = self.clock()
        write(*args, **kwargs)
        self.beat.took(self.clock() - start)


def _batches(epochs: list[list[Metric]], size: int):
    """The epochs' metrics in lists of at most `size`, in step order, an epoch split only
    when it alone has more: a write is one transaction, so the store holds whole epochs
    and the last `loss` step counts them (reading.logged_epochs, on resume)."""
    batch: list[Metric] = []
    for metrics in epochs:
        if len(batch) + len(metrics) > size and batch:
            yield batch
            batch = []
        while len(metrics) > size:
            yield metrics[:size]
            metrics = metrics[size:]
        batch = batch + metrics
    if batch:
        yield batch


def _is_number(v) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def run_tags(cfg, pipeline_path: str | None) -> dict[str, str]:
    """The tags of a training run: what it trained on, from which file and commit."""
    tags = {"tfdl.arch": cfg.model.arch, "tfdl.dataset": cfg.data.source, **cfg.tracking.tags}
    if cfg.description:
        tags["mlflow.note.content"] = cfg.description  # shown as the run's description
    if pipeline_path:
        path = Path(pipeline_path).resolve()
        tags["tfdl.pipeline"] = (
            str(path.relative_to(PROJECT)) if path.is_relative_to(PROJECT) else path.name
        )
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def unique_name(*parts: str) -> str:
    """A run name that says what ran and tells runs apart: its parts, the time, and four
    hex digits from the OS's generator (Python's `random` is seeded by training, so names
    drawn from it repeat run after run)."""
    return "-".join([*parts, time.strftime("%m%d-%H%M%S"), secrets.token_hex(2)])


def trial_name(trial_id: str, values: dict) -> str:
    """`trial-3 units=[64], activation=relu`: a trial's values in its name, for the UI."""
    shown = ", ".join(f"{path.rsplit('.', 1)[-1]}={json.dumps(v)}" for path, v in values.items())
    return f"trial-{trial_id} {shown}"[:250]  # MLflow's limit on run names


def log_datasets(run_id: str, prepared) -> None:
    """The data a run trained on, as MLflow dataset inputs (the UI's Dataset column): each
    split with its source, schema, size and a digest of its whole content, so that a
    changed file shows as a new digest."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.numpy_dataset import from_numpy
    from mlflow.data.sources import LocalArtifactDatasetSource
    from mlflow.entities import DatasetInput, InputTag

    data, s = prepared.cfg.data, prepared.splits
    path = getattr(data, "path", None)
    if path:
        source, name = LocalArtifactDatasetSource(Path(path).resolve().as_uri()), Path(path).name
    else:
        source, name = CodeDatasetSource({"tfdl.source": data.source}), data.source
    inputs = []
    # A streamed split holds file names or row numbers: the files' sizes and times count too.
    stamp = _file_stamps(s.spec.stream, s.x_train, s.x_val, s.x_test)
    for split, context in (("train", "training"), ("val", "validation"), ("test", "test")):
        x, y = getattr(s, f"x_{split}"), getattr(s, f"y_{split}")
        digest = content_digest(x, y, *stamp)
        dataset = from_numpy(x, targets=y, source=source, name=name, digest=digest)
        tags = [InputTag("mlflow.data.context", context)]
        inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags=tags))
    # MLflow's stores add a data set they have not seen check-then-insert: runs of one data
    # set starting together would all insert it, and all but one fail. A sqlite store is
    # locked around it; a server's database refuses the late inserts (a unique key), and
    # the call, which adds nothing twice, finds the data set there when made again.
    with shared(tracking_uri()):
        for attempt in range(INPUT_ATTEMPTS):
            try:
                client().log_inputs(run_id, datasets=inputs)
                break
            except RestException:  # the server's refusal (one that does not answer: raised)
                if attempt == INPUT_ATTEMPTS - 1:
                    raise
                time.sleep(0.1 * (attempt + 1))


def _file_stamps(stream: dict | None, *splits) -> list[np.ndarray]:
    """(size, modification time) of each file a streamed source reads."""
    if not stream:
        return []
    files = [stream["path"]] if stream["kind"] == "csv" else [f for s in splits for f in s]
    stats = [os.stat(f) for f in files]
    return [np.array([(st.st_size, st.st_mtime_ns) for st in stats], dtype=np.int64)]


def content_digest(*arrays) -> str:
    """Eight hex digits of a hash over every value (MLflow's own hashes the first 10,000)."""
    h = hashlib.sha256()
    for a in arrays:
        for part in a.values() if isinstance(a, dict) else [a]:
            part = np.asarray(part)
            h.update(str((part.dtype, part.shape)).encode())
            if part.dtype == object:  # strings: their text, not the pointers to it
                h.update("\x1f".join(map(str, part.reshape(-1))).encode())
            else:
                h.update(np.ascontiguousarray(part).tobytes())
    return h.hexdigest()[:8]


def log_start(run_id: str, cfg: dict, spec: dict) -> None:
    """What a run records first, so that an interrupted run can be resumed: every config
    value as a parameter, the resolved config.yaml and the data spec."""
    c = client()
    log_params(run_id, flatten(cfg))
    c.log_text(run_id, yaml.safe_dump(cfg, sort_keys=False), "config.yaml")
    c.log_dict(run_id, spec, "data_spec.json")


def log_keras_model(
    run_id: str, model, name: str, sample, spec: dict, register_as: str | None = None
) -> str | None:
    """A Keras model as an MLflow model of the run that stands alone: its signature is the
    raw input tensor(s) of `sample`'s shape; its metadata names the features and classes
    (`spec`: the data spec); and it carries tfdl's own layers (their classes and the code
    defining them), so `mlflow.pyfunc.load_model` and `mlflow models serve` need no
    installed tfdl. With `register_as`, the model becomes a new version of that
    registered model; returns the version."""
    import keras
    import mlflow
    import tensorflow as tf
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    import tfdl

    # A seq2seq model's sample is a dict of named inputs; a single input stays unnamed, so
    # MLflow hands the model the array itself rather than a one-item structure.
    inputs = sample if isinstance(sample, dict) else {None: sample}
    inputs = {k: np.asarray(v) for k, v in inputs.items()}
    output = np.asarray(model.predict(sample, verbose=0))
    signature = ModelSignature(
        Schema([TensorSpec(v.dtype, (-1, *v.shape[1:]), k) for k, v in inputs.items()]),
        Schema([TensorSpec(output.dtype, (-1, *output.shape[1:]))]),
    )
    ours = {k: v for k, v in keras.saving.get_custom_objects().items() if k.startswith("tfdl>")}
    names = {k: list(spec.get(k) or ()) for k in ("feature_names", "class_names")}
    # MLflow files a logged model under the global store and experiment, not the run's.
    mlflow.set_experiment(experiment_id=client().get_run(run_id).info.experiment_id)
    info = mlflow.tensorflow.log_model(
        model,
        name=name,
        run_id=run_id,
        registered_model_name=register_as,
        signature=signature,
        metadata={"task": spec["task"], **names},
        custom_objects=ours,
        code_paths=[str(Path(tfdl.__file__).parent)],
        # Pinned here: inferring requirements would reload the model in a subprocess.
        pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"],
    )
    version = info.registered_model_version
    if version is not None:
        client().set_tag(run_id, "tfdl.registered", f"{register_as}/{version}")
    return None if version is None else str(version)


def log_results(
    run_id: str,
    *,
    model,
    history,
    pictures: Path | None,
    test_metrics: dict,
    summary,
    info: dict,
    sample,
    spec: dict,
    best_model,
    log_model: bool = True,
    register_as: str | None = None,
) -> str | None:
    """The end of a run: test metrics, training summary, history, pictures, the model(s).
    Returns the registered model version, if `register_as` named a registered model."""
    c = client()
    metrics, tags = summary
    now = int(time.time() * 1000)
    values = {f"test_{k}": float(v) for k, v in test_metrics.items()} | metrics
    c.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in values.items()],
        tags=[RunTag(k, str(v)) for k, v in tags.items()],
    )
    log_params(run_id, {f"data_info.{k}": v for k, v in info.items()})
    summary_text = io.StringIO()
    model.summary(print_fn=lambda line, *a, **k: summary_text.write(line + "\n"))
    c.log_text(run_id, summary_text.getvalue(), "model_summary.txt")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.csv"
        history.to_csv(path, index=False)
        c.log_artifact(run_id, str(path))
    if pictures is not None:
        c.log_artifacts(run_id, str(pictures), "pictures")
    if best_model is not None:
        c.log_artifact(run_id, str(best_model), "best_model")
    if log_model:
        return log_keras_model(run_id, model, "model", sample, spec, register_as)
    return None


def log_lr_find(run_id: str, settings: dict, lrs, losses, smoothed, suggestion: float) -> None:
    """A learning-rate sweep: its settings, the curve as metrics, CSV and plot, the pick."""
    import pandas as pd

    from tfdl.plots import lr_find_plot

    c, now = client(), int(time.time() * 1000)
    log_params(run_id, settings)
    curve = [
        Metric(key, value, now, step)
        for step, (lr, loss) in enumerate(zip(lrs, losses, strict=True))
        for key, value in (("lr_find/learning_rate", lr), ("lr_find/loss", loss))
    ]
    curve.append(Metric("suggested_learning_rate", suggestion, now, 0))
    for i in range(0, len(curve), 1000):  # MLflow takes at most 1000 metrics per batch
        c.log_batch(run_id, metrics=curve[i : i + 1000])
    with tempfile.TemporaryDirectory() as tmp:
        frame = pd.DataFrame({"learning_rate": lrs, "loss": losses, "smoothed_loss": smoothed})
        frame.to_csv(Path(tmp) / "lr_find.csv", index=False)
        lr_find_plot(lrs, losses, smoothed, suggestion, Path(tmp) / "lr_find.png")
        c.log_artifacts(run_id, tmp)


def log_trial_values(run_id: str, values: dict) -> None:
    """A trial's hyperparameters as parameters (lists as JSON, as in the config)."""
    log_params(run_id, {k: json.dumps(v) if isinstance(v, list) else v for k, v in values.items()})


def log_search(
    parent_id: str,
    *,
    table,
    best: dict,
    metric: str,
    plot,
    pipeline: dict,
    model,
    sample,
    spec: dict,
    register_as: str | None = None,
):
    """A finished search: results table, objective plot, best values, the best pipeline
    (also as config.yaml, with the data spec, as a training run has them) and model. With
    `register_as`, the best model becomes a new version with the alias `champion`."""
    c = client()
    # Tags, not params: a resumed search may find a new best, and params cannot change.
    tags = [
        RunTag(f"best.{k}", json.dumps(v) if isinstance(v, list) else str(v))
        for k, v in best["values"].items()
    ]
    c.log_batch(parent_id, tags=tags)
    with tempfile.TemporaryDirectory() as tmp:
        table.to_csv(Path(tmp) / "trials.csv", index=False)
        plot(Path(tmp) / "objective.png")
        (Path(tmp) / "best_pipeline.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
        c.log_artifacts(parent_id, tmp)
    c.log_text(parent_id, yaml.safe_dump(pipeline, sort_keys=False), "config.yaml")
    c.log_dict(parent_id, spec, "data_spec.json")
    if model is not None:
        version = log_keras_model(parent_id, model, "best_model", sample, spec, register_as)
        if version is not None:
            c.set_registered_model_alias(register_as, "champion", version)
    # Last: a rerun takes the best score as the sign that all of the above was logged.
    score = Metric(f"best_{metric}", best["score"], int(time.time() * 1000), 0)
    c.log_batch(parent_id, metrics=[score])
