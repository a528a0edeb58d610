"""Everything that talks to MLflow. Training code receives plain callables from here and
never touches MLflow itself.

- lifecycle: one run's life (open or reopen, then FINISHED / KILLED / FAILED), experiments;
- records: what a run records (start, epochs, results, models, sweeps, searches);
- reading: runs read back (one run, its config, spec and model; tables of runs).
"""

import contextlib

from tfdl.tracking import liveness, outage
from tfdl.tracking.lifecycle import (
    endings,
    error_message,
    experiment_id,
    new_run,
    reopened,
    run_lifecycle,
    search_parent,
    system_metrics,
    trial,
)
from tfdl.tracking.reading import (
    find_model,
    find_run,
    has_metric,
    history_frame,
    load_model,
    load_spec,
    logged_epochs,
    metric_histories,
    model_inputs,
    resolved_config,
    resumable,
    run_model_uri,
    runs_frame,
)
from tfdl.tracking.records import (
    epoch_logger,
    log_datasets,
    log_keras_model,
    log_lr_find,
    log_results,
    log_search,
    log_start,
    log_trial_values,
    run_tags,
    trial_name,
    unique_name,
)

INTERRUPTED_TRAINING = "interrupted: resumable from its last finished epoch"


@contextlib.contextmanager
def training_run(
    prepared, *, resume_id=None, kind="training", run_name=None, tags=None, interrupted=None
):
    """The lifecycle of a run of `prepared` (a training or a learning-rate sweep): a new
    run, named after what it trains unless named, that records its start and its data
    first; or run `resume_id` reopened. With `tracking.system_metrics`, MLflow samples
    CPU, memory and GPU into it meanwhile."""
    cfg = prepared.cfg
    outage.configure(cfg.tracking.outage_wait_s)
    if resume_id is not None:
        opener, setup = reopened(resume_id), None
    else:
        name = run_name or cfg.tracking.run_name or unique_name(cfg.model.arch, cfg.data.source)
        opener = new_run(
            cfg.tracking.experiment, name=name, tags=run_tags(cfg, prepared.path) | (tags or {})
        )

        def setup(run_id):
            log_start(run_id, cfg.to_dict(), prepared.spec.to_dict())
            log_datasets(run_id, prepared)

    with run_lifecycle(
        opener, kind=kind, interrupted=interrupted or INTERRUPTED_TRAINING, setup=setup
    ) as run_id:
        with system_metrics(run_id, cfg.tracking.system_metrics, resumed=resume_id is not None):
            yield run_id


__all__ = [
    "endings",
    "epoch_logger",
    "error_message",
    "experiment_id",
    "find_model",
    "find_run",
    "has_metric",
    "history_frame",
    "liveness",
    "outage",
    "load_model",
    "load_spec",
    "log_keras_model",
    "log_lr_find",
    "log_results",
    "log_search",
    "log_start",
    "log_datasets",
    "log_trial_values",
    "logged_epochs",
    "metric_histories",
    "model_inputs",
    "new_run",
    "reopened",
    "resolved_config",
    "resumable",
    "run_lifecycle",
    "run_model_uri",
    "run_tags",
    "runs_frame",
    "search_parent",
    "system_metrics",
    "training_run",
    "trial",
    "trial_name",
    "unique_name",
]
