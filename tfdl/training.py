"""One run of the flow: prepared pipeline -> model -> fit -> MLflow.

Everything that can reject the input (loading the data, matching loss and metrics to the
task, building the model) happens before the MLflow run starts, so bad input leaves no run.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras

from tfdl import distribute, store, tracking
from tfdl.callbacks.dropout_schedule import dropout_layers
from tfdl.callbacks.stack import build_callbacks
from tfdl.compile import compile_model
from tfdl.errors import ConfigError
from tfdl.models import build_model, get_hook
from tfdl.pictures import run_pictures
from tfdl.prepared import Prepared
from tfdl.resident import resident_split


@dataclass
class RunResult:
    run_id: str | None  # None on a multi_worker worker other than the chief: it records nothing
    test_metrics: dict[str, float]
    history: dict[str, list[float]]
    model: keras.Model
    model_version: str | None = None  # in the registry, with tracking.register_as
    registered_model: str | None = None  # the registered model it is a version of


def build(p: Prepared) -> keras.Model:
    """The compiled model of a prepared pipeline, its initial weights from the seed: inside
    the scope of `train.distribution`'s strategy, under mixed precision with
    `train.mixed_precision` (the global dtype policy is restored afterwards)."""
    cfg = p.cfg
    if cfg.train.deterministic:
        import tensorflow as tf

        # Process-wide and one-way: every op from here on picks a deterministic kernel.
        tf.config.experimental.enable_op_determinism()
    t = cfg.train
    with distribute.precision(t.mixed_precision), distribute.scope(t.distribution):
        keras.utils.set_random_seed(t.seed)  # same seed, same initial weights
        try:
            model = build_model(cfg.model, p.spec)
        except ValueError as err:  # e.g. a layer that cannot take this input shape
            shape = p.spec.body_shape
            raise ConfigError(
                "model", f"cannot build {cfg.model.arch} for input shape {shape}: {err}"
            ) from None
        if cfg.callbacks.dropout_schedule is not None and not dropout_layers(model):
            raise ConfigError(
                "callbacks.dropout_schedule",
                "the model has no dropout layer to drive",
                "model.dropout > 0",
            )
        if t.distribution != "none":
            distribute.mend(model)
        model = compile_model(model, p)
        # Keras makes the optimizer's slots in the first trace of its train function, and
        # a tf.function whose trace made variables is traced again: made here, fit's
        # first epoch traces the step once (0.2-0.4 s less on a small model).
        model.optimizer.build(model.trainable_variables)
        return model


def trained_state(model) -> tuple[list, list]:
    """The values of a model's weights and of its optimizer's variables (its step, moments,
    loss scale): under multi_worker every worker reads them in step."""
    return model.get_weights(), [v.numpy() for v in model.optimizer.variables]


def local_copy(state: tuple[list, list], p: Prepared) -> keras.Model:
    """A model of this process's own in the trained `state` (trained_state): the same
    architecture built outside any strategy, compiled alike. Under multi_worker the
    trained model runs every prediction as a collective op of all workers; the chief
    draws the run's pictures and logs the model from this copy, the others gone."""
    weights, optimizer = state
    with distribute.precision(p.cfg.train.mixed_precision):
        copy = compile_model(build_model(p.cfg.model, p.spec), p)
    copy.set_weights(weights)
    copy.optimizer.build(copy.trainable_variables)
    for variable, value in zip(copy.optimizer.variables, optimizer, strict=True):
        variable.assign(value)
    return copy


def fit(model, p: Prepared, *, callbacks=(), epochs=None, initial_epoch=0, **stack_kwargs):
    """model.fit (or the lecture's loop, `train.loop: custom`) over the prepared tf.data
    splits with the callback stack, then the caller's `callbacks`; returns (history,
    stack). `stack_kwargs` go to build_callbacks (no `log`: nothing is tracked; no
    `run_dir`: no backup).

    Under a distribution Keras splits each batch of the same splits between the replicas.
    Under multi_worker the backup is taken every epoch: saving reads variables in step
    across the workers, so they must all save at the same epochs, which a clock would not
    decide alike."""
    t, health = p.cfg.train, p.cfg.callbacks.gradient_health
    probe = p.probe(health.batch_size) if health else None
    if t.distribution == "multi_worker":
        stack_kwargs.setdefault("backup_every_s", 0.0)
    stack = build_callbacks(p.cfg.callbacks, probe=probe, **stack_kwargs)
    run = dict(
        validation_data=p.dataset("val"),
        epochs=epochs or t.epochs,
        initial_epoch=initial_epoch,
        callbacks=[*stack.callbacks, *callbacks],
        verbose=t.verbose,
    )
    steps = p.steps_per_epoch
    if t.loop == "custom":  # on one device (tfdl.compile refuses it with a distribution)
        from tfdl.gradient_descent import gradient_descent

        metrics = dict(metric_names=t.metrics, task=p.spec.task, one_hot=p.one_hot)
        train = p.dataset("train", repeat=True)
        history = gradient_descent(model, train, **run, **metrics, steps_per_epoch=steps)
        return history, stack
    resident = resident_split(p)
    if resident is not None:  # batches gathered inside the compiled call, no tf.data read
        run["callbacks"].insert(0, resident)  # each epoch's order drawn before anything runs
        with resident.training(model):
            history = model.fit(resident.stand_in(), **run, steps_per_epoch=steps, shuffle=False)
    # One repeated stream read through all epochs (one pass each, reshuffled): Keras then
    # keeps one iterator instead of making one every epoch, and the prefetch reads on across
    # an epoch's end. Keras runs whole steps_per_execution blocks, so only where they
    # divide the epoch; elsewhere a stream per epoch. shuffle=False: tf.data shuffles.
    elif steps % model.steps_per_execution == 0:
        train = p.dataset("train", repeat=True)
        history = model.fit(train, **run, steps_per_epoch=steps, shuffle=False)
    else:
        history = model.fit(p.dataset("train"), **run, shuffle=False)
    return history, stack


def train(
    p: Prepared, *, resume_id: str | None = None, callbacks: list[keras.callbacks.Callback] = ()
) -> RunResult:
    """Train and record one run of `p`, or continue run `resume_id` (whose logged config
    `p` was prepared from) from its last backed-up epoch. `callbacks` are Keras callbacks
    of the caller's own, run after the stack.

    Under multi_worker (tfdl.distribute.start joined the cluster) only the chief records
    the run; every worker trains and evaluates in step with it."""
    model = build(p)
    if not distribute.records():
        return _follow(model, p, resume_id=resume_id, callbacks=callbacks)
    tags = _run_tags(model, p)
    with tracking.training_run(p, resume_id=resume_id, tags=tags) as run_id:
        with distribute.watching():  # a worker lost fails the run instead of hanging it
            history, stack = fit(
                model,
                p,
                callbacks=callbacks,
                log=tracking.epoch_logger(run_id),
                logged_epochs=tracking.logged_epochs(run_id) if resume_id else 0,
                run_dir=store.run_dir(run_id),
            )
            test_metrics = evaluate(model, p, "test")
            state = trained_state(model) if distribute.role() else None  # read in step
        if state is not None:
            model = local_copy(state, p)
        tracking.outage.answering(run_id)  # a server gone while it trained: wait, as epochs do
        frame = tracking.history_frame(run_id, list(history.history))  # all epochs, resumed too
        pictures = store.run_dir(run_id) / "pictures"
        run_pictures(model, p.cfg, p.splits, frame, pictures, seed=p.cfg.train.seed)
        version = tracking.log_results(
            run_id,
            model=model,
            history=frame,
            pictures=pictures,
            test_metrics=test_metrics,
            summary=stack.summary(),
            info=p.splits.info,
            sample=p.sample(),
            spec=p.spec.to_dict(),
            best_model=stack.best_model,
            log_model=p.cfg.tracking.log_model,
            register_as=p.cfg.tracking.register_as,
        )
    shutil.rmtree(store.run_dir(run_id), ignore_errors=True)  # finished: nothing to resume
    registered = p.cfg.tracking.register_as if version else None
    return RunResult(run_id, test_metrics, history.history, model, version, registered)


def _follow(model, p: Prepared, *, resume_id: str | None, callbacks) -> RunResult:
    """A multi_worker worker other than the chief: the chief's steps (training, its
    callbacks, the test evaluation), recording nothing. Its backups go to a folder of its
    own, at the same epochs as the chief's; a resumed run restores the chief's backup."""
    restore = store.run_dir(resume_id) / "backup" if resume_id else None
    with tempfile.TemporaryDirectory(prefix="tfdl-worker-") as tmp, distribute.watching():
        history, _ = fit(model, p, callbacks=callbacks, run_dir=Path(tmp), restore_from=restore)
        test_metrics = evaluate(model, p, "test")
        state = trained_state(model)  # in step with the chief
    return RunResult(None, test_metrics, history.history, local_copy(state, p))


def _run_tags(model, p: Prepared) -> dict[str, str]:
    """What the run computed on: the model's compute dtype (float16 under mixed precision)
    and its replicas (and workers)."""
    tags = {"tfdl.compute_dtype": model.dtype_policy.compute_dtype}
    t = p.cfg.train
    if t.distribution != "none":
        tags["tfdl.replicas"] = str(distribute.replicas(t.distribution))
    c = distribute.role()
    if c is not None:
        tags["tfdl.workers"] = ",".join(c.workers)
    return tags


def evaluate(model, p: Prepared, split: str) -> dict[str, float]:
    """The compiled metrics of `model` on one split, and on the test split the
    architecture's extra metrics (e.g. exact-match accuracy of greedy decoding)."""
    metrics = model.evaluate(p.dataset(split), return_dict=True, verbose=0)
    evaluator = get_hook(p.cfg.model.arch, "evaluator")
    if evaluator is not None and split == "test":
        metrics |= evaluator(model, p.splits)
    return {k: float(v) for k, v in metrics.items()}
