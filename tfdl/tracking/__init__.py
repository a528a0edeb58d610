"""Everything that talks to MLflow. Training code receives plain callables from here and
never touches MLflow itself.

- lifecycle: one run's life (open or reopen, then FINISHED / KILLED / FAILED), experiments;
- records: what a run records (start, epochs, results, models, sweeps, searches);
- reading: runs read back (one run, its config, spec and model; tables of runs).
"""

from tfdl.tracking.lifecycle import (
    endings,
    error_message,
    experiment_id,
    new_run,
    reopened,
    run_lifecycle,
    search_parent,
    trial,
)
from tfdl.tracking.reading import (
    find_run,
    has_metric,
    history_frame,
    load_model,
    load_spec,
    logged_epochs,
    metric_histories,
    resolved_config,
    resumable,
    runs_frame,
)
from tfdl.tracking.records import (
    epoch_logger,
    log_keras_model,
    log_lr_find,
    log_results,
    log_search,
    log_start,
    log_trial_values,
    run_tags,
)

INTERRUPTED_TRAINING = "interrupted: resumable from its last finished epoch"


def training_run(
    prepared, *, resume_id=None, kind="training", run_name=None, tags=None, interrupted=None
):
    """The lifecycle of a run of `prepared` (a training or a learning-rate sweep): a new
    run that records its start first, or run `resume_id` reopened."""
    if resume_id is not None:
        opener, setup = reopened(resume_id), None
    else:
        cfg = prepared.cfg
        opener = new_run(
            cfg.tracking.experiment,
            name=run_name or cfg.tracking.run_name,
            tags=run_tags(cfg, prepared.path) | (tags or {}),
        )

        def setup(run_id):
            log_start(run_id, cfg.to_dict(), prepared.spec.to_dict(), prepared.splits.normaliser)

    return run_lifecycle(
        opener, kind=kind, interrupted=interrupted or INTERRUPTED_TRAINING, setup=setup
    )


__all__ = [
    "endings",
    "epoch_logger",
    "error_message",
    "experiment_id",
    "find_run",
    "has_metric",
    "history_frame",
    "load_model",
    "load_spec",
    "log_keras_model",
    "log_lr_find",
    "log_results",
    "log_search",
    "log_start",
    "log_trial_values",
    "logged_epochs",
    "metric_histories",
    "new_run",
    "reopened",
    "resolved_config",
    "resumable",
    "run_lifecycle",
    "run_tags",
    "runs_frame",
    "search_parent",
    "training_run",
    "trial",
]
