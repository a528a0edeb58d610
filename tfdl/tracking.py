"""Everything that talks to MLflow: experiments, the run's lifecycle, what a run records."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import subprocess
import tempfile
from pathlib import Path

import mlflow
import yaml
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from tfdl.errors import ConfigError
from tfdl.store import PROJECT, artifact_root, tracking_uri

MAX_TAG = 5000  # MLflow caps tag values; an error message is cut to fit


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "experiment"
    # Names that differ only in dropped characters must not share a folder.
    return slug if slug == name else f"{slug}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"


def experiment_id(name: str) -> str:
    """The experiment's id, creating it (with its artifacts inside the store) if needed."""
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    root = artifact_root(uri)
    location = (root / _slug(name)).as_uri() if root else None
    return client.create_experiment(name, artifact_location=location)


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    """{"train": {"epochs": 3}} -> {"train.epochs": "3"}: every config value as a parameter."""
    out: dict[str, str] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return out


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def log_epoch(logs: dict, epoch: int) -> None:
    """Every number in Keras's epoch logs as a metric, step = epoch number (1-based)."""
    metrics = {k: float(v) for k, v in logs.items() if _is_number(v)}
    mlflow.log_metrics(metrics, step=epoch + 1)


def _is_number(v) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


@contextlib.contextmanager
def start_run(cfg: dict, *, tags: dict[str, str], run_name: str | None, experiment: str):
    """An MLflow run around one training; ends FINISHED, KILLED (Ctrl-C/SIGTERM) or FAILED.

    A failure's message is kept as the `tfdl.error` tag, so a run is never left RUNNING
    and the reason is visible in the UI.
    """
    exp_id = experiment_id(experiment)
    run = mlflow.start_run(experiment_id=exp_id, run_name=run_name, tags=tags)
    try:
        mlflow.log_params(flatten(cfg))
        yield run
    except KeyboardInterrupt:
        mlflow.set_tag("tfdl.error", "interrupted")
        mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
        raise
    except BaseException as err:
        mlflow.set_tag("tfdl.error", f"{type(err).__name__}: {err}"[:MAX_TAG])
        mlflow.end_run(RunStatus.to_string(RunStatus.FAILED))
        raise
    else:
        mlflow.end_run(RunStatus.to_string(RunStatus.FINISHED))


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
    *, cfg: dict, model, history: dict, test_metrics: dict, info: dict, spec, sample
) -> None:
    """The end of a run: test metrics, resolved config, data spec, summary, history, model.

    `data_spec.json` (shapes, task, classes, vocabulary) is what reloading the model for
    generation or prediction needs besides the model itself.
    """
    import keras
    import pandas as pd
    import tensorflow as tf
    from mlflow.models import infer_signature

    mlflow.log_metrics({f"test_{k}": float(v) for k, v in test_metrics.items()})
    mlflow.log_params({f"data_info.{k}": v for k, v in info.items()})
    mlflow.log_text(yaml.safe_dump(cfg, sort_keys=False), "config.yaml")
    mlflow.log_dict(spec.to_dict(), "data_spec.json")
    summary = io.StringIO()
    model.summary(print_fn=lambda line, *a, **k: summary.write(line + "\n"))
    mlflow.log_text(summary.getvalue(), "model_summary.txt")
    frame = pd.DataFrame(history)
    frame.insert(0, "epoch", range(1, len(frame) + 1))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.csv"
        frame.to_csv(path, index=False)
        mlflow.log_artifact(str(path))
    if cfg["tracking"]["log_model"]:
        signature = infer_signature(sample, model.predict(sample, verbose=0))
        mlflow.tensorflow.log_model(
            model,
            name="model",
            signature=signature,
            # Pinned here: inferring requirements would reload the model in a subprocess.
            pip_requirements=[f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"],
        )


def find_run(run_id: str):
    """A run of the store, or a ConfigError naming the id."""
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient(tracking_uri()).get_run(run_id)
    except MlflowException:
        raise ConfigError(
            "--run-id",
            f"no run {run_id!r} in the store {tracking_uri()}",
            "a run id from `make ui`",
        ) from None


def load_logged_model(run):
    """(data spec dict, Keras model) logged by a run; ConfigError if it has none."""
    from mlflow.exceptions import MlflowException

    try:
        spec = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/data_spec.json")
        model = mlflow.tensorflow.load_model(f"runs:/{run.info.run_id}/model")
    except (MlflowException, OSError):
        raise ConfigError(
            "--run-id",
            f"run {run.info.run_id} has no logged model and data_spec.json",
            "a FINISHED run trained with tracking.log_model: true",
        ) from None
    return spec, model
