"""Reading runs back: one run and what it logged (config, spec, model, history), the runs
of experiments as a table, metric histories. Asking about runs never creates a store."""

from __future__ import annotations

import json

import mlflow
import yaml
from mlflow.exceptions import MlflowException

from tfdl.errors import ConfigError
from tfdl.store import sqlite_path, tracking_uri
from tfdl.tracking import liveness
from tfdl.tracking.lifecycle import client


def _store_exists() -> bool:
    db = sqlite_path(tracking_uri())
    return db is None or db.exists()


def find_run(run_id: str, field: str = "run_id"):
    """A run of the store, or a ConfigError naming the id (as the setting `field`)."""
    try:
        if not _store_exists():
            raise MlflowException("no store yet")
        return client(write=False).get_run(run_id)
    except MlflowException:
        raise ConfigError(
            field, f"no run {run_id!r} in the store {tracking_uri()}", "a run id from `make ui`"
        ) from None


def resumable(run_id: str):
    """(resolved config, run) of an interrupted run; ConfigError if it cannot resume."""
    run = find_run(run_id, field="resume")
    kind = run.data.tags.get("tfdl.kind", "training")
    if kind != "training":
        problem = f"run {run_id} is a {kind.replace('_', '-')} run, not a training"
        raise ConfigError("resume", problem, "the id of an interrupted training run")
    if run.info.status == "FINISHED":
        raise ConfigError(
            "resume",
            f"run {run_id} already FINISHED",
            "a run that was interrupted (KILLED, or RUNNING after kill -9)",
        )
    liveness.refuse_if_live(run)  # before TensorFlow loads; again, locked, as it reopens
    return resolved_config(run), run


def _artifact(run, name: str, field: str | None = None):
    """A JSON or YAML artifact of the run, parsed; missing: a ConfigError naming the setting
    `field`, or None when no `field` is given (the artifact is optional)."""
    try:
        text = mlflow.artifacts.load_text(f"{run.info.artifact_uri}/{name}")
    except (MlflowException, OSError):
        if field is None:
            return None
        raise ConfigError(
            field, f"run {run.info.run_id} logged no {name}", "a run of tfdl train"
        ) from None
    # Not YAML for both: PyYAML reads a JSON number such as 1e-05 as a string.
    return json.loads(text) if name.endswith(".json") else yaml.safe_load(text)


def resolved_config(run, field: str = "run_id"):
    """The validated pipeline a run logged when it started (its config.yaml); ConfigError
    naming the setting `field` if it logged none."""
    from tfdl.config import validate

    return validate(_artifact(run, "config.yaml", field))


def load_spec(run, field: str = "run_id") -> tuple[dict, dict | None]:
    """(data spec, normaliser or None) a run logged; ConfigError naming the setting `field`
    if it logged no spec. Only runs from before models scaled their own inputs logged a
    normaliser (normaliser.json)."""
    return _artifact(run, "data_spec.json", field), _artifact(run, "normaliser.json")


def load_model(run, uri: str | None = None, field: str = "run_id"):
    """The Keras model a run logged, or the registered version at `uri` (see find_model);
    ConfigError naming the setting `field` if there is none."""
    try:
        client(write=False)  # `runs:/` and `models:/` resolve against the global URI
        return mlflow.tensorflow.load_model(uri or run_model_uri(run))
    except (MlflowException, OSError):
        raise _no_model(run, uri, field) from None


def _no_model(run, uri: str | None, field: str) -> ConfigError:
    if field == "model":
        problem = f"{uri} does not load as a Keras model"
        return ConfigError(field, problem, "a version of a tfdl run's model")
    return ConfigError(
        field,
        f"run {run.info.run_id} has no logged model",
        "a FINISHED run trained with tracking.log_model: true",
    )


def run_model_uri(run) -> str:
    """The URI of the model a run logged: a training run's `model`, a search's best."""
    name = "best_model" if run.data.tags.get("tfdl.kind") == "search" else "model"
    return f"runs:/{run.info.run_id}/{name}"


MODEL_REFS = "NAME@ALIAS or NAME/VERSION of a registered model"


def find_model(ref: str):
    """(source run, model URI) of a registered model version named `NAME@ALIAS` or
    `NAME/VERSION`. The run holds the config and data spec the version was trained with;
    the URI names the version itself, so an alias moved later cannot switch models midway.

    ConfigError naming the setting `model` for a malformed reference, an unknown model,
    version or alias, listing what exists.
    """
    body = ref.removeprefix("models:/")
    # Registered names hold no "/" (MLflow refuses them), so NAME/VERSION splits at the first.
    name, sep, key = body.partition("/") if "/" in body else body.rpartition("@")
    if not (name and key) or (sep == "/" and not key.isdigit()):
        raise ConfigError("model", f"{ref!r} names no model version", MODEL_REFS)
    if not _store_exists():
        raise ConfigError(
            "model",
            f"no registered model {name!r}: the store {tracking_uri()} does not exist",
            "train a pipeline with tracking.register_as: NAME first",
        )
    c = client(write=False)
    try:
        model = c.get_registered_model(name)
    except MlflowException:
        names = sorted(m.name for m in c.search_registered_models())
        raise ConfigError(
            "model",
            f"no registered model {name!r} in the store {tracking_uri()}",
            ", ".join(names) or "none registered yet (tracking.register_as: NAME)",
        ) from None
    versions = sorted(int(v.version) for v in c.search_model_versions(f"name = '{name}'"))
    aliases = dict(sorted(model.aliases.items()))
    known = [f"{name}@{a}" for a in aliases] + [f"{name}/{v}" for v in versions]
    if sep == "@" and key not in aliases:
        problem = f"model {name!r} has no alias {key!r}"
        raise ConfigError("model", problem, ", ".join(known) or "no versions yet")
    if sep == "/" and int(key) not in versions:
        problem = f"model {name!r} has no version {key}"
        raise ConfigError("model", problem, ", ".join(known) or "no versions yet")
    version = str(aliases[key] if sep == "@" else int(key))
    source = c.get_model_version(name, version).run_id
    if not source:
        raise ConfigError(
            "model",
            f"version {version} of {name!r} was not logged by a run of this store",
            "a version registered from a run's model",
        )
    return find_run(source, field="model"), f"models:/{name}/{version}"


def model_inputs(run, uri: str | None = None, field: str = "run_id") -> list[dict] | None:
    """The inputs of the signature of the model `load_model` would load, as plain dicts
    (`type`, `name`, `tensor-spec` with dtype and shape); None when it has no signature."""
    try:
        client(write=False)
        signature = mlflow.models.get_model_info(uri or run_model_uri(run)).signature
    except (MlflowException, OSError):
        raise _no_model(run, uri, field) from None
    return signature.inputs.to_dict() if signature is not None else None


def logged_epochs(run_id: str) -> int:
    """How many epochs a run has logged (its last `loss` step)."""
    return max((m.step for m in client(write=False).get_metric_history(run_id, "loss")), default=0)


def has_metric(run_id: str, key: str) -> bool:
    return key in client(write=False).get_run(run_id).data.metrics


def history_frame(run_id: str, keys):
    """Per-epoch metrics as MLflow holds them: all epochs, also across a resume."""
    import pandas as pd

    c = client(write=False)
    columns = {key: {m.step: m.value for m in c.get_metric_history(run_id, key)} for key in keys}
    frame = pd.DataFrame(columns).sort_index()
    frame.index.name = "epoch"
    return frame.reset_index()


def runs_frame(experiments: list[str] | None = None, filter_string: str | None = None):
    """The runs of `experiments` (all when None) matching `filter_string`, as MLflow's
    pandas frame: run_id, experiment_id, status, start_time, end_time, `params.*`,
    `metrics.*` (last values), `tags.*`; plus `experiment` (the experiment's name).

    ConfigError for an unknown experiment name or a filter MLflow cannot parse.
    """
    import pandas as pd

    if not _store_exists():
        raise ConfigError(
            "experiment",
            f"no runs yet: the store {tracking_uri()} does not exist",
            "train a pipeline first",
        )
    names = {e.name: e.experiment_id for e in client(write=False).search_experiments()}
    wanted = list(names) if not experiments else list(dict.fromkeys(experiments))
    for name in wanted:
        if name not in names:
            raise ConfigError(
                "experiment", f"no experiment {name!r}", ", ".join(sorted(names)) or "none yet"
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
            "filter", message, "MLflow search syntax, e.g. params.model.arch = 'cnn2d'"
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
    c = client(write=False)
    out = {}
    for run_id in run_ids:
        points = {}
        for m in sorted(c.get_metric_history(run_id, key), key=lambda m: m.timestamp):
            points[m.step] = m.value
        out[run_id] = sorted(points.items())
    return out
