"""One run of the flow: config -> data -> model -> fit -> MLflow.

Everything that can reject the input (loading the data, matching loss and metrics to the
task, building the model) happens before the MLflow run starts, so bad input leaves no run.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from tfdl import tracking
from tfdl.callbacks import MetricsLogger, build_callbacks
from tfdl.compile import compile_model, prepare
from tfdl.config import PipelineConfig
from tfdl.data.pipeline import make_datasets
from tfdl.data.spec import take
from tfdl.errors import ConfigError
from tfdl.models import build_model, get_hook


@dataclass
class RunResult:
    run_id: str
    test_metrics: dict[str, float]
    history: dict[str, list[float]]
    model: keras.Model


def build(cfg: PipelineConfig, spec):
    """The compiled model of a resolved pipeline."""
    keras.utils.set_random_seed(cfg.train.seed)  # same seed, same initial weights
    try:
        model = build_model(cfg.model, spec)
    except ValueError as err:  # e.g. a layer that cannot take this input shape
        raise ConfigError(
            "model", f"cannot build {cfg.model.arch} for input {spec.input_shape}: {err}"
        ) from None
    return compile_model(model, cfg, spec.task)


def train(cfg: PipelineConfig, *, pipeline_path: str | None = None, prepared=None) -> RunResult:
    """Train and record one run. `prepared` is `compile.prepare(cfg)` when already done."""
    cfg, splits = prepared or prepare(cfg)
    model = build(cfg, splits.spec)
    t = cfg.train
    train_ds, val_ds, test_ds = make_datasets(
        splits, batch_size=t.batch_size, seed=t.seed, one_hot=t.loss == "categorical_crossentropy"
    )
    callbacks = build_callbacks(cfg.callbacks)
    resolved = cfg.to_dict()
    with tracking.start_run(
        resolved,
        tags=tracking.run_tags(cfg, pipeline_path),
        run_name=cfg.tracking.run_name,
        experiment=cfg.tracking.experiment,
    ) as run:
        history = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=t.epochs,
            callbacks=[*callbacks, MetricsLogger(tracking.log_epoch)],
            verbose=t.verbose,
            shuffle=False,  # the tf.data pipeline shuffles the training split itself
        )
        test_metrics = model.evaluate(test_ds, return_dict=True, verbose=0)
        evaluator = get_hook(cfg.model.arch, "evaluator")
        if evaluator is not None:  # e.g. exact-match accuracy of greedy decoding
            test_metrics |= evaluator(model, splits)
        tracking.log_results(
            cfg=resolved,
            model=model,
            history=history.history,
            test_metrics=test_metrics,
            info=splits.info,
            spec=splits.spec,
            sample=take(splits.x_test, slice(0, 5)),
        )
    return RunResult(run.info.run_id, test_metrics, history.history, model)
