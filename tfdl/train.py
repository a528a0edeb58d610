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
from tfdl.data.pipeline import probe_batch, split_dataset
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


def dataset(cfg, splits, split: str, repeat: bool = False):
    """The "train", "val" or "test" split of a resolved pipeline as its tf.data pipeline;
    `repeat`: an endless stream of epochs (make_dataset)."""
    t = cfg.train
    x, y = getattr(splits, f"x_{split}"), getattr(splits, f"y_{split}")
    one_hot = t.loss == "categorical_crossentropy"
    kw = dict(batch_size=t.batch_size, seed=t.seed, one_hot=one_hot, repeat=repeat)
    return split_dataset(splits, x, y, training=split == "train", **kw)


def fit(model, cfg, splits, *, callbacks=(), epochs=None, initial_epoch=0, **stack_kwargs):
    """model.fit over the pipeline's tf.data splits with its callback stack, then the
    caller's `callbacks`; returns (history, stack). `stack_kwargs` go to build_callbacks
    (no `log`: nothing is tracked; no `run_dir`: no backup)."""
    t = cfg.train
    health = cfg.callbacks.gradient_health
    one_hot = t.loss == "categorical_crossentropy"
    probe = probe_batch(splits, health.batch_size, one_hot) if health else None
    stack = build_callbacks(cfg.callbacks, probe=probe, **stack_kwargs)
    history = model.fit(
        # Not repeated with steps_per_epoch: Keras then runs whole steps_per_execution
        # blocks, and an epoch whose steps they do not divide would run past its end.
        dataset(cfg, splits, "train"),
        validation_data=dataset(cfg, splits, "val"),
        epochs=epochs or t.epochs,
        initial_epoch=initial_epoch,
        callbacks=[*stack.callbacks, *callbacks],
        verbose=t.verbose,
        shuffle=False,  # the tf.data pipeline shuffles the training split itself
    )
    return history, stack


def train(
    cfg: PipelineConfig,
    *,
    pipeline_path: str | None = None,
    prepared=None,
    resume_id: str | None = None,
    callbacks: list[keras.callbacks.Callback] = (),
) -> RunResult:
    """Train and record one run, or continue run `resume_id` from its last backed-up epoch.

    `prepared` is `compile.prepare(cfg)` when the caller already did it. `callbacks` are
    Keras callbacks of the caller's own, run after the stack.
    """
    cfg, splits = prepared or prepare(cfg)
    t = cfg.train
    model = build(cfg, splits.spec, math.ceil(len(splits.y_train) / t.batch_size))
    with tracking.start_run(
        cfg.to_dict(),
        spec=splits.spec,
        tags=tracking.run_tags(cfg, pipeline_path),
        run_name=cfg.tracking.run_name,
        experiment=cfg.tracking.experiment,
        resume_id=resume_id,
        normaliser=splits.normaliser,
    ) as run:
        run_id = run.info.run_id
        history, stack = fit(
            model,
            cfg,
            splits,
            callbacks=callbacks,
            log=tracking.epoch_logger(run_id),
            logged_epochs=tracking.logged_epochs(run_id) if resume_id else 0,
            run_dir=store.run_dir(run_id),
        )
        test_metrics = model.evaluate(dataset(cfg, splits, "test"), return_dict=True, verbose=0)
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
