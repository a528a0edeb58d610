"""Everything that talks to MLflow: experiments, the run's lifecycle, what a run records."""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import io
import json
import logging
import re
import subprocess
import tempfile
import time
import traceback
from pathlib import Path

import mlflow
import yaml
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from tfdl.config import flatten
from tfdl.errors import ConfigError
from tfdl.store import PROJECT, artifact_root, open_sqlite, shared, sqlite_path, tracking_uri

MAX_TAG = 5000  # MLflow caps tag values; an error message is cut to fit
# Creating a new store's tables is routine, not news: keep stderr for errors.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "experiment"
    # Names that differ only in dropped characters must not share a folder.
    return slug if slug == name else f"{slug}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"


def experiment_id(name: str) -> str:
    """The experiment's id, creating it (with its artifacts inside the store) if needed."""
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    open_sqlite(uri)
    client = MlflowClient(uri)
    with shared(uri):  # processes starting together must not both create it
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        root = artifact_root(uri)
        location = (root / _slug(name)).as_uri() if root else None
        return client.create_experiment(name, artifact_location=location)


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


# The thread that stores epoch metrics. Ours, not MLflow's async queue: ending a run shuts
# that queue down and joins its threads, which cost about a second per run (a search's trials).
_WRITER = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tfdl-metrics")


def epoch_logger(run_id: str):
    """A function logging every number of Keras's epoch logs to run `run_id`, step = epoch
    number (1-based). The run is named, not taken from MLflow's active-run stack, so no
    metric of one trial can land in another's run."""
    client = MlflowClient(tracking_uri())
    pending = []
    # In the background: the write overlaps the epoch's backup instead of adding to the
    # epoch (benchmarks/results/speed.md); `log.wait()` returns once every epoch is stored.

    def log(logs: dict, epoch: int) -> None:
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, epoch + 1) for k, v in logs.items() if _is_number(v)]
        pending.append(_WRITER.submit(client.log_batch, run_id, metrics=metrics))

    def wait() -> None:
        while pending:
            pending.pop(0).result()  # raises what the write raised

    log.wait = wait
    return log


def _is_number(v) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


@contextlib.contextmanager
def start_run(
    cfg: dict,
    *,
    spec,
    tags: dict[str, str],
    run_name: str | None,
    experiment: str,
    resume_id: str | None = None,
    normaliser: dict | None = None,
):
    """An MLflow run around one training; ends FINISHED, KILLED (Ctrl-C/SIGTERM) or FAILED.

    The resolved config and data spec are logged first, so an interrupted run can be
    resumed (`resume_id` reopens it). A failure's message is kept as the `tfdl.error` tag
    and its traceback as `error.txt`: a run is never left RUNNING by a clean shutdown, and
    the reason shows in the UI. Opening and ending hold SIGINT/SIGTERM, so a signal cannot
    leave a half-opened run unguarded or cut its ending short.
    """
    from tfdl.callbacks.backup import signals_deferred

    mlflow.set_tracking_uri(tracking_uri())  # a resume opens no experiment, which sets it
    run = None
    try:
        with signals_deferred():  # a signal meanwhile is raised once `run` is set
            if resume_id is not None:
                run = mlflow.start_run(run_id=resume_id)
                if "tfdl.error" in run.data.tags:
                    MlflowClient(tracking_uri()).delete_tag(resume_id, "tfdl.error")
            else:
                run = mlflow.start_run(
                    experiment_id=experiment_id(experiment), run_name=run_name, tags=tags
                )
                mlflow.log_params(flatten(cfg))
                mlflow.log_text(yaml.safe_dump(cfg, sort_keys=False), "config.yaml")
                mlflow.log_dict(spec.to_dict(), "data_spec.json")
                if normaliser is not None:
                    mlflow.log_dict(normaliser, "normaliser.json")
        yield run
    except KeyboardInterrupt:
        if run is not None:
            with signals_deferred():
                mlflow.set_tag("tfdl.error", "interrupted: resume with tfdl train --resume")
                mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
        raise
    except BaseException as err:
        if run is not None:
            with signals_deferred():
                mlflow.set_tag("tfdl.error", error_message(err))
                with contextlib.suppress(Exception):  # e.g. a full disk: the status matters more
                    mlflow.log_text(traceback.format_exc(), "error.txt")
                mlflow.end_run(RunStatus.to_string(RunStatus.FAILED))
        raise
    else:
        with signals_deferred():
            mlflow.end_run(RunStatus.to_string(RunStatus.FINISHED))


def last_run_id() -> str | None:
    """The run this process opened last with `start_run` (active or ended), if any."""
    run = mlflow.last_active_run()
    return run.info.run_id if run else None


def error_message(err: BaseException) -> str:
    """`Type: message` as kept in the `tfdl.error` tag, cut to MLflow's limit."""
    return f"{type(err).__name__}: {err}"[:MAX_TAG]


def logged_epochs(run_id: str) -> int:
    """How many epochs a run has logged (its last `loss` step)."""
    steps = [m.step for m in MlflowClient(tracking_uri()).get_metric_history(run_id, "loss")]
    return max(steps, default=0)


def resumable(run_id: str):
    """(resolved config, run) of an interrupted run; ConfigError if it cannot resume."""

    run = find_run(run_id, field="--resume")
    if run.info.status == "FINISHED":
        raise ConfigError(
            "--resume",
            f"run {run_id} already FINISHED",
            "a run that was interrupted (KILLED, or RUNNING after kill -9)",
        )
    return resolved_config(run), run


def resolved_config(run):
    """The validated pipeline a run logged when it started (its config.yaml)."""
    from tfdl.config import validate

    config = yaml.safe_load(mlflow.artifacts.load_text(f"{run.info.artifact_uri}/config.yaml"))
    return validate(config)


def history_frame(run_id: str, keys):
    """Per-epoch metrics as MLflow holds them: all epochs, also across a resume."""
    import pandas as pd

    client = MlflowClient(tracking_uri())
    columns = {
        key: {m.step: m.value for m in client.get_metric_history(run_id, key)} for key in keys
    }
    frame = pd.DataFrame(columns).sort_index()
    frame.index.name = "epoch"
    return frame.reset_index()


def run_tags(cfg, pipeline_path: str | None) -> dict[str, str]:
    tags = {
        "tfdl.arch": cfg.model.arch,
        "tfdl.dataset": cfg.data.source,
        **cfg.tracking.tags,
    }
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


def log_results(
    *,
    run_id: str,
    model,
    history,
    pictures: Path | None = None,
    test_metrics: dict,
    summary,
    info: dict,
    sample,
    best_model,
    log_model: bool = True,
) -> None:
    """The end of a run: test metrics, training summary, history, pictures, the model(s)."""
    import keras
    import tensorflow as tf
    from mlflow.models import infer_signature

    metrics, tags = summary
    mlflow.log_metrics({f"test_{k}": float(v) for k, v in test_metrics.items()} | metrics)
    mlflow.set_tags(tags)
    mlflow.log_params({f"data_info.{k}": v for k, v in info.items()})
    summary_text = io.StringIO()
    model.summary(print_fn=lambda line, *a, **k: summary_text.write(line + "\n"))
    mlflow.log_text(summary_text.getvalue(), "model_summary.txt")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.csv"
        history.to_csv(path, index=False)
        mlflow.log_artifact(str(path))
    if pictures is not None:
        mlflow.log_artifacts(str(pictures), "pictures")
    if best_model is not None:
        mlflow.log_artifact(str(best_model), "best_model")
    if not log_model:
        return
    signature = infer_signature(sample, model.predict(sample, verbose=0))
    mlflow.tensorflow.log_model(
        model,
        name="model",
        signature=signature,
        # Pinned here: inferring requirements would reload the model in a subprocess.
        pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"],
    )


def log_lr_find(settings: dict, lrs, losses, smoothed, suggestion: float) -> None:
    """A learning-rate sweep: its settings, the curve as metrics, CSV and plot, the pick."""
    import pandas as pd

    from tfdl.plots import lr_find_plot

    mlflow.log_params(settings)
    for step, (lr, loss) in enumerate(zip(lrs, losses, strict=True)):
        mlflow.log_metrics({"lr_find/learning_rate": lr, "lr_find/loss": loss}, step=step)
    mlflow.log_metric("suggested_learning_rate", suggestion)
    with tempfile.TemporaryDirectory() as tmp:
        frame = pd.DataFrame({"learning_rate": lrs, "loss": losses, "smoothed_loss": smoothed})
        frame.to_csv(Path(tmp) / "lr_find.csv", index=False)
        lr_find_plot(lrs, losses, smoothed, suggestion, Path(tmp) / "lr_find.png")
        mlflow.log_artifacts(tmp)


def find_run(run_id: str, field: str = "--run-id"):
    """A run of the store, or a ConfigError naming the id (as the option `field`)."""
    from mlflow.exceptions import MlflowException

    uri, db = tracking_uri(), sqlite_path(tracking_uri())
    try:
        if db is not None and not db.exists():
            raise MlflowException("no store yet")  # asking about a run must not create one
        run = MlflowClient(uri).get_run(run_id)
        mlflow.set_tracking_uri(uri)  # `runs:/` URIs and the run's artifacts resolve with it
        return run
    except MlflowException:
        raise ConfigError(
            field,
            f"no run {run_id!r} in the store {tracking_uri()}",
            "a run id from `make ui`",
        ) from None


def load_spec(run) -> tuple[dict, dict | None]:
    """(data spec, normaliser or None) a run logged; ConfigError if it logged none."""
    from mlflow.exceptions import MlflowException

    try:
        spec = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/data_spec.json")
    except (MlflowException, OSError):
        raise ConfigError(
            "--run-id", f"run {run.info.run_id} logged no data_spec.json", "a run of tfdl train"
        ) from None
    try:
        normaliser = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/normaliser.json")
    except (MlflowException, OSError):
        normaliser = None  # trained without normalisation
    return spec, normaliser


def load_model(run):
    """The Keras model a run logged; ConfigError if it has none."""
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.tensorflow.load_model(f"runs:/{run.info.run_id}/model")
    except (MlflowException, OSError):
        raise ConfigError(
            "--run-id",
            f"run {run.info.run_id} has no logged model",
            "a FINISHED run trained with tracking.log_model: true",
        ) from None


# ----------------------------------------------------------------------------- searches


def search_parent(name: str, job: dict, experiment: str, overwrite: bool) -> str:
    """The parent run of search `name`: the earlier one when the search is re-run (so a
    resumed search stays one run), a new one when there is none or `overwrite`."""
    client = MlflowClient(tracking_uri())
    exp_id = experiment_id(experiment)
    digest = hashlib.sha1(json.dumps(job, sort_keys=True).encode()).hexdigest()[:12]
    found = client.search_runs(
        [exp_id], f"tags.`tfdl.search` = '{name}'", order_by=["attributes.start_time DESC"]
    )
    if found and not overwrite:
        parent = found[0]
        if parent.data.tags.get("tfdl.search_digest") != digest:
            raise ConfigError(
                name,
                "the search changed since its last run",
                "tfdl tune --overwrite to start afresh",
            )
        client.update_run(parent.info.run_id, status="RUNNING")
        client.delete_tag(
            parent.info.run_id, "tfdl.error"
        ) if "tfdl.error" in parent.data.tags else None
        return parent.info.run_id
    for old in found:  # --overwrite: the old search's runs go with its trials
        client.delete_run(old.info.run_id)
    tags = {"tfdl.search": name, "tfdl.search_digest": digest, "tfdl.kind": "search"}
    run = client.create_run(exp_id, run_name=f"search-{name}", tags=tags)
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in flatten(job).items()])
    return run.info.run_id


INTERRUPTED_SEARCH = "interrupted: run the search again to resume it"


@contextlib.contextmanager
def ended(open_run, interrupted: str = INTERRUPTED_SEARCH):
    """Open a run with `open_run()` (it creates or reopens one and returns its id) and end
    it FINISHED, KILLED (interrupt, `interrupted` as the `tfdl.error` tag) or FAILED (the
    error as the tag, its traceback as `error.txt`).

    Opening and ending hold SIGINT/SIGTERM: a signal that comes meanwhile is raised once
    the run is guarded, so it can neither leave the run RUNNING nor cut its ending short.
    """
    from tfdl.callbacks.backup import signals_deferred

    client = MlflowClient(tracking_uri())
    run_id = None
    try:
        with signals_deferred():
            run_id = open_run()
        yield run_id
    except KeyboardInterrupt:
        if run_id is not None:
            with signals_deferred():
                client.set_tag(run_id, "tfdl.error", interrupted)
                client.set_terminated(run_id, "KILLED")
        raise
    except BaseException as err:
        if run_id is not None:
            with signals_deferred():
                client.set_tag(run_id, "tfdl.error", error_message(err))
                with contextlib.suppress(Exception):  # e.g. a full disk: the status matters more
                    client.log_text(run_id, traceback.format_exc(), "error.txt")
                client.set_terminated(run_id, "FAILED")
        raise
    else:
        with signals_deferred():
            client.set_terminated(run_id, "FINISHED")


@contextlib.contextmanager
def child_run(parent_id: str, trial_id: str, values: dict):
    """A trial's nested run under the search's parent, its hyperparameters as params.

    An earlier, interrupted attempt at the same trial is deleted first: the trial is
    recorded once, by the attempt that ran it through.
    """
    client = MlflowClient(tracking_uri())

    def open_run() -> str:
        exp_id = client.get_run(parent_id).info.experiment_id
        query = f"tags.mlflow.parentRunId = '{parent_id}' and tags.`tfdl.trial_id` = '{trial_id}'"
        for stale in client.search_runs([exp_id], query):
            client.delete_run(stale.info.run_id)
        tags = {"mlflow.parentRunId": parent_id, "tfdl.trial_id": trial_id, "tfdl.kind": "trial"}
        run = client.create_run(exp_id, run_name=f"trial-{trial_id}", tags=tags)
        params = [
            Param(k, json.dumps(v) if isinstance(v, list) else str(v)) for k, v in values.items()
        ]
        client.log_batch(run.info.run_id, params=params)
        return run.info.run_id

    with ended(open_run) as run_id:
        yield run_id


def has_metric(run_id: str, key: str) -> bool:
    return key in MlflowClient(tracking_uri()).get_run(run_id).data.metrics


def log_search(
    parent_id: str, *, table, best: dict, metric: str, plot, pipeline: dict, model, sample
):
    """A finished search: results table, objective plot, best values, pipeline and model."""
    import keras
    import tensorflow as tf
    from mlflow.models import infer_signature

    client = MlflowClient(tracking_uri())
    # Tags, not params: a resumed search may find a new best, and params cannot change.
    tags = [
        RunTag(f"best.{k}", json.dumps(v) if isinstance(v, list) else str(v))
        for k, v in best["values"].items()
    ]
    client.log_batch(parent_id, tags=tags)
    with tempfile.TemporaryDirectory() as tmp:
        table.to_csv(Path(tmp) / "trials.csv", index=False)
        plot(Path(tmp) / "objective.png")
        (Path(tmp) / "best_pipeline.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
        client.log_artifacts(parent_id, tmp)
    if model is not None:
        with mlflow.start_run(run_id=parent_id):
            mlflow.tensorflow.log_model(
                model,
                name="best_model",
                signature=infer_signature(sample, model.predict(sample, verbose=0)),
                pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"],
            )
    # Last: a rerun takes the best score as the sign that all of the above was logged.
    score = Metric(f"best_{metric}", best["score"], int(time.time() * 1000), 0)
    client.log_batch(parent_id, metrics=[score])


# ----------------------------------------------------------------------------- comparing


def _store_exists() -> bool:
    db = sqlite_path(tracking_uri())
    return db is None or db.exists()  # asking about runs must not create a store


def runs_frame(experiments: list[str] | None = None, filter_string: str | None = None):
    """The runs of `experiments` (all when None) matching `filter_string`, as MLflow's
    pandas frame: run_id, experiment_id, status, start_time, end_time, `params.*`,
    `metrics.*` (last values), `tags.*`; plus `experiment` (the experiment's name).

    ConfigError for an unknown experiment name or a filter MLflow cannot parse.
    """
    import pandas as pd
    from mlflow.exceptions import MlflowException

    uri = tracking_uri()
    if not _store_exists():
        raise ConfigError(
            "--experiment", f"no runs yet: the store {uri} does not exist", "train a pipeline first"
        )
    mlflow.set_tracking_uri(uri)
    names = {e.name: e.experiment_id for e in MlflowClient(uri).search_experiments()}
    wanted = list(names) if not experiments else list(dict.fromkeys(experiments))
    for name in wanted:
        if name not in names:
            raise ConfigError(
                "--experiment", f"no experiment {name!r}", ", ".join(sorted(names)) or "none yet"
            )
    try:
        frame = mlflow.search_runs(
            experiment_ids=[names[n] for n in wanted],
            filter_string=filter_string or "",
            output_format="pandas",
        )
    except MlflowException as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            "--filter", message, "MLflow search syntax, e.g. params.model.arch = 'cnn2d'"
        ) from None
    if not isinstance(frame, pd.DataFrame):  # defensive: search_runs returns a list otherwise
        frame = pd.DataFrame(frame)
    by_id = {v: k for k, v in names.items()}
    ids = frame["experiment_id"] if "experiment_id" in frame else pd.Series(dtype=object)
    frame["experiment"] = ids.map(by_id)
    return frame


def metric_histories(run_ids, key: str) -> dict[str, list[tuple[int, float]]]:
    """Each run's history of metric `key` as (step, value) pairs sorted by step; a run
    that never logged it maps to []. A step logged twice (a resume) keeps its last value."""
    client = MlflowClient(tracking_uri())
    out = {}
    for run_id in run_ids:
        points = {}
        for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp):
            points[m.step] = m.value
        out[run_id] = sorted(points.items())
    return out
