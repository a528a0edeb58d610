"""One run of the flow: config -> data -> model -> fit -> MLflow.

Everything that can reject the input (loading the data, matching loss and metrics to the
task, building the model) happens before the MLflow run starts, so bad input leaves no run.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass

import keras

from tfdl import store, tracking
from tfdl.callbacks.dropout_schedule import dropout_layers
from tfdl.callbacks.stack import build_callbacks
from tfdl.compile import compile_model, prepare
from tfdl.config import PipelineConfig
from tfdl.data.pipeline import make_datasets, probe_batch
from tfdl.data.spec import take
from tfdl.errors import ConfigError
from tfdl.models import build_model, get_hook
from tfdl.pictures import run_pictures


@dataclass
class RunResult:
    run_id: str
    test_metrics: dict[str, float]
    history: dict[str, list[float]]
    model: keras.Model


def build(cfg: PipelineConfig, spec, steps_per_epoch: int = 1):
    """The compiled model of a resolved pipeline."""
    if cfg.train.deterministic:
        import tensorflow as tf

        # Process-wide and one-way: every op from here on picks a deterministic kernel.
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(cfg.train.seed)  # same seed, same initial weights
    try:
        model = build_model(cfg.model, spec)
    except ValueError as err:  # e.g. a layer that cannot take this input shape
        raise ConfigError(
            "model", f"cannot build {cfg.model.arch} for input shape {spec.input_shape}: {err}"
        ) from None
    if cfg.callbacks.dropout_schedule is not None and not dropout_layers(model):
        raise ConfigError(
            "callbacks.dropout_schedule",
            "the model has no dropout layer to drive",
            "model.dropout > 0",
        )
    return compile_model(model, cfg, spec.task, steps_per_epoch)


def train(
    cfg: PipelineConfig,
    *,
    pipeline_path: str | None = None,
    prepared=None,
    resume_id: str | None = None,
) -> RunResult:
    """Train and record one run, or continue run `resume_id` from its last backed-up epoch.

    `prepared` is `compile.prepare(cfg)` when the caller already did it.
    """
    cfg, splits = prepared or prepare(cfg)
    t = cfg.train
    one_hot = t.loss == "categorical_crossentropy"
    steps_per_epoch = math.ceil(len(splits.y_train) / t.batch_size)
    model = build(cfg, splits.spec, steps_per_epoch)
    train_ds, val_ds, test_ds = make_datasets(
        splits, batch_size=t.batch_size, seed=t.seed, one_hot=one_hot
    )
    health = cfg.callbacks.gradient_health
    probe = probe_batch(splits, health.batch_size, one_hot) if health else None
    resolved = cfg.to_dict()
    with tracking.start_run(
        resolved,
        spec=splits.spec,
        tags=tracking.run_tags(cfg, pipeline_path),
        run_name=cfg.tracking.run_name,
        experiment=cfg.tracking.experiment,
        resume_id=resume_id,
        normaliser=splits.normaliser,
    ) as run:
        run_id = run.info.run_id
        stack = build_callbacks(
            cfg.callbacks,
            log=tracking.epoch_logger(run_id),
            logged_epochs=tracking.logged_epochs(run_id) if resume_id else 0,
            run_dir=store.run_dir(run_id),
            probe=probe,
        )
        history = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=t.epochs,
            callbacks=stack.callbacks,
            verbose=t.verbose,
            shuffle=False,  # the tf.data pipeline shuffles the training split itself
        )
        test_metrics = model.evaluate(test_ds, return_dict=True, verbose=0)
        evaluator = get_hook(cfg.model.arch, "evaluator")
        if evaluator is not None:  # e.g. exact-match accuracy of greedy decoding
            test_metrics |= evaluator(model, splits)
        frame = tracking.history_frame(run_id, list(history.history))  # all epochs, resumed too
        pictures = store.run_dir(run_id) / "pictures"
        run_pictures(model, cfg, splits, frame, pictures, seed=t.seed)
        tracking.log_results(
            run_id=run_id,
            model=model,
            history=frame,
            pictures=pictures,
            test_metrics=test_metrics,
            summary=stack.summary(),
            info=splits.info,
            sample=take(splits.x_test, slice(0, 5)),
            best_model=stack.best_model,
            log_model=cfg.tracking.log_model,
        )
    shutil.rmtree(store.run_dir(run_id), ignore_errors=True)  # finished: nothing to resume
    return RunResult(run_id, test_metrics, history.history, model)
