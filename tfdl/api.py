"""The Python API, for notebooks and scripts: what the `tfdl` command does, as functions.

    import tfdl
    cfg = tfdl.load_pipeline("pipelines/mlp.yaml", overrides={"train.epochs": 3})
    result = tfdl.train(cfg)          # run id, test metrics, history, the Keras model

Every function validates its input as the command line does (a ConfigError naming the
setting) and records the same MLflow runs. TensorFlow is imported only once the input has
passed, and nothing here touches the caller's matplotlib backend.
"""

from __future__ import annotations

from pathlib import Path


def load_pipeline(source, overrides=()):
    """A validated pipeline (`PipelineConfig`) from a YAML file, a mapping or a pipeline
    already loaded, with `overrides` applied: `["train.epochs=3"]` or `{"train.epochs": 3}`."""
    from tfdl.config import apply_overrides, as_overrides, read_yaml, validate

    if hasattr(source, "to_dict"):
        raw = source.to_dict()
    elif isinstance(source, dict):
        raw = source
    else:
        raw = read_yaml(source)
    return validate(apply_overrides(raw, as_overrides(overrides)))


def prepare(pipeline, overrides=(), *, store: bool = False):
    """The prepared pipeline (config, loaded splits, derived facts) of a YAML file, a
    mapping or a `PipelineConfig`; a `Prepared` without overrides is returned as it is.
    `store`: check that the tracking store can take the run, between the config and the
    data (loading some data imports TensorFlow)."""
    from tfdl.prepared import Prepared
    from tfdl.prepared import prepare as prepare_config

    if isinstance(pipeline, Prepared):
        if not overrides:
            _check_store(pipeline.cfg, store)
            return pipeline
        pipeline = pipeline.cfg
    path = str(pipeline) if isinstance(pipeline, (str, Path)) else None
    cfg = load_pipeline(pipeline, overrides)
    _check_store(cfg, store)
    return prepare_config(cfg, path)


def _check_store(cfg, wanted: bool) -> None:
    if wanted:
        from tfdl.store import check_writable

        check_writable(cfg.tracking.experiment)


def train(
    pipeline=None,
    overrides=(),
    *,
    resume: str | None = None,
    callbacks=(),
    workers=None,
    worker_index: int | None = None,
):
    """Train and record one run of `pipeline` (a file, mapping, config or prepared
    pipeline), or continue the interrupted run `resume`. Returns a `RunResult`: run_id,
    test_metrics, history, model. `callbacks`: Keras callbacks of your own.

    With `train.distribution: multi_worker`, `workers` lists every worker's host:port
    (a list, or one string "host:port,host:port") and `worker_index` says which one this
    process is; worker 0, the chief, records the run (the others return run_id None)."""
    from tfdl import distribute
    from tfdl.errors import ConfigError
    from tfdl.prepared import Prepared
    from tfdl.prepared import prepare as prepare_config

    follower = workers is not None and worker_index not in (None, 0)
    if resume is not None:
        if pipeline is not None or overrides:
            raise ConfigError(
                "resume", "takes no pipeline or overrides", "resume RUN_ID alone", ("resume",)
            )
        cfg, source = _resumed(resume, follower), None
    elif pipeline is None:
        allowed = "a pipeline file, mapping or config; or resume RUN_ID"
        raise ConfigError("pipeline", "missing", allowed, ("resume",))
    else:
        if isinstance(pipeline, Prepared):
            source = load_pipeline(pipeline.cfg, overrides) if overrides else pipeline
        else:
            source = load_pipeline(pipeline, overrides)
        cfg = getattr(source, "cfg", source)
    cluster = distribute.cluster(cfg.train.distribution, workers, worker_index)
    if cluster is not None:
        distribute.check_port(cluster)
    if source is not None:  # a worker other than the chief touches no store
        _check_store(cfg, not follower)
    if cluster is not None:
        # Before the data: loading some sources starts TensorFlow, after which a process
        # can no longer join a cluster.
        _ready()
        _join(cluster)
    if isinstance(source, Prepared):
        p = source
    else:
        path = str(pipeline) if isinstance(pipeline, (str, Path)) else None
        p = prepare_config(cfg, path)
    _ready()
    from tfdl.training import train as train_prepared

    return train_prepared(p, resume_id=resume, callbacks=list(callbacks))


def _resumed(run_id: str, follower: bool):
    """The config of the interrupted run `run_id`. A multi_worker worker other than the
    chief only reads it: the chief checks the run and reopens it."""
    from tfdl.store import check_writable
    from tfdl.tracking import find_run, resolved_config, resumable

    if follower:
        return resolved_config(find_run(run_id, "resume"), "resume")
    check_writable()  # the run is looked up in the store: it must answer
    return resumable(run_id)[0]


def _join(cluster) -> None:
    from tfdl import distribute
    from tfdl.errors import ConfigError

    try:
        distribute.start(cluster)
    except RuntimeError as err:  # TensorFlow ran already (e.g. a notebook's earlier cell)
        raise ConfigError(
            "workers",
            f"this process cannot join a cluster any more: {err}",
            "a fresh process for each worker",
        ) from None


def tune(search, overrides=(), *, overwrite: bool = False, name: str | None = None):
    """Run (or continue) the Keras Tuner search of a tuning file, every trial an MLflow
    child run; `overwrite` starts afresh. Returns a `SearchResult` (None in a worker of a
    distributed search): parent_id, best_values, best_score, trials. A search of more
    than the job's `worker_trials` runs its trials in child processes (tfdl.search_workers)."""
    from tfdl.config import as_overrides, load_tuning, validate
    from tfdl.errors import ConfigError
    from tfdl.prepared import prepare as prepare_config
    from tfdl.search_workers import in_children, in_processes, role

    job, base = load_tuning(search, as_overrides(overrides))
    cfg = validate(base)
    _check_store(cfg, True)
    p = prepare_config(cfg)
    if job.objective.metric not in p.logged_names:
        raise ConfigError(
            "objective.metric",
            f"{job.objective.metric!r} is not logged",
            ", ".join(p.logged_names),
        )
    name = name or Path(search).stem
    if in_processes(job, role()):
        return in_children(job, base, name, overwrite)
    _ready()
    from tfdl.search import search as run_search

    return run_search(job, base, name=name, overwrite=overwrite, prepared=p)


def find_learning_rate(
    pipeline, overrides=(), *, min_lr=1e-7, max_lr=10.0, steps=200, progress=True
):
    """The lecture's learning-rate sweep on a pipeline, recorded as a run. Returns a
    `Sweep`: run_id, lrs, losses and the suggested rate."""
    from tfdl.errors import ConfigError
    from tfdl.lr_find import check_sweep, lr_find

    check_sweep(min_lr, max_lr, steps)
    p = prepare(pipeline, overrides, store=True)
    if p.cfg.train.distribution == "multi_worker":
        raise ConfigError(
            "train.distribution", "a sweep runs in one process, not multi_worker", "none, mirrored"
        )
    _ready()
    return lr_find(p, min_lr=min_lr, max_lr=max_lr, steps=steps, progress=progress)


def _ready() -> None:
    """The input and the store passed: load TensorFlow quietly."""
    from tfdl.runtime import import_tensorflow

    import_tensorflow()
