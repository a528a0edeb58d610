"""One run of the flow: config -> data -> model -> fit -> MLflow.

Everything that can reject the input (loading the data, matching loss and metrics to the
task, building the model) happens before the MLflow run starts, so bad input leaves no run.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

from tfdl import tracking
from tfdl.callbacks import build_callbacks
from tfdl.compile import compile_model, resolve
from tfdl.config import PipelineConfig
from tfdl.data.pipeline import make_datasets
from tfdl.data.split import load_splits
from tfdl.errors import ConfigError
from tfdl.models import build_model


@dataclass
class RunResult:
    run_id: str
    test_metrics: dict[str, float]
    history: dict[str, list[float]]
    model: keras.Model


def prepare(cfg: PipelineConfig):
    """Data, resolved config and compiled model: everything short of training."""
    seed = cfg.train.seed
    splits = load_splits(cfg.data, seed)
    cfg = resolve(cfg, splits.spec)
    keras.utils.set_random_seed(seed)  # same seed, same initial weights
    try:
        model = build_model(cfg.model, splits.spec)
    except ValueError as err:  # e.g. a layer that cannot take this input shape
        raise ConfigError(
            "model", f"cannot build {cfg.model.arch} for input {splits.spec.input_shape}: {err}"
        ) from None
    compile_model(model, cfg, splits.spec.task)
    return cfg, splits, model


def train(cfg: PipelineConfig, *, pipeline_path: str | None = None) -> RunResult:
    cfg, splits, model = prepare(cfg)
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
            callbacks=[*callbacks, tracking.EpochLogger()],
            verbose=t.verbose,
        )
        test_metrics = model.evaluate(test_ds, return_dict=True, verbose=0)
        tracking.log_results(
            cfg=resolved,
            model=model,
            history=history.history,
            test_metrics=test_metrics,
            info=splits.info,
            sample=splits.x_test[:5].astype(splits.spec.input_dtype),
        )
    return RunResult(run.info.run_id, test_metrics, history.history, model)
