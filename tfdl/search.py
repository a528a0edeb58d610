"""Keras Tuner search over a pipeline: every trial one run of the flow, one MLflow child run.

A tuning file names a pipeline and a search space over its dotted config paths. The
HyperModel turns Keras Tuner's HyperParameters into config overrides, so every builder
and every config value is tunable with no code change. What a search needs before
TensorFlow loads (its parent run, how many trials it plans, its processes) is in
tfdl.search_workers.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import logging
import os
import statistics
import time
import warnings
from pathlib import Path

import keras
import keras_tuner as kt
from keras_tuner.src import config as kt_config
from keras_tuner.src import utils as kt_utils
from keras_tuner.src.distribute import utils as dist_utils

from tfdl import tracking
from tfdl.config import TuningConfig, apply_overrides, as_overrides, validate
from tfdl.prepared import Prepared, prepare
from tfdl.search_workers import (
    INTERRUPTED_SEARCH,
    HandOver,
    SearchResult,
    planned,
    project_dir,
    search_run,
    write_whole,
)
from tfdl.search_workers import role as _role
from tfdl.signals import signals_deferred
from tfdl.training import build, fit

TUNERS = {
    "random": kt.RandomSearch,
    "grid": kt.GridSearch,
    "hyperband": kt.Hyperband,
    "bayesian": kt.BayesianOptimization,
}


def _save_json(path, obj) -> str:
    """Keras Tuner's state files (oracle, trials, tuner), written whole: its own writes in
    place, cut short by a kill, leave a file the next run of the search cannot read."""
    text = json.dumps(obj)
    write_whole(Path(path), text)
    return text


kt_utils.save_json = _save_json  # every state file goes through it


def declare(hp: kt.HyperParameters, path: str, param):
    """Declare one search dimension on `hp` and return the value of this trial.

    Keras Tuner's choices must be scalars of one type; other values (lists such as layer
    widths) travel as JSON strings and are decoded here.
    """
    match param.type:
        case "choice":
            values = param.values
            scalar = all(isinstance(v, (int, float, str, bool)) for v in values)
            if scalar and len({type(v) for v in values}) == 1:
                return hp.Choice(path, values)
            return json.loads(hp.Choice(path, [json.dumps(v) for v in values]))
        case "int":
            return hp.Int(path, param.min, param.max, step=param.step)
        case "float":
            return hp.Float(path, param.min, param.max, step=param.step, sampling=param.sampling)
        case "bool":
            return hp.Boolean(path)
    raise AssertionError(param.type)  # the schema admits no other type


def decoded(job: TuningConfig, values: dict) -> dict:
    """A trial's values of the search space as config values, choices carried as JSON
    strings decoded. (Hyperband adds bookkeeping values such as tuner/epochs: not config.)"""
    out = {}
    for path, param in job.space.items():
        if path in values:
            value = values[path]
            carried = param.type == "choice" and value not in param.values
            value = json.loads(value) if carried and isinstance(value, str) else value
            # min + k * step in binary floats: 0.30000000000000004 is meant as 0.3
            out[path] = float(f"{value:.12g}") if isinstance(value, float) else value
    return out


class PipelineHyperModel(kt.HyperModel):
    """Builds and fits the pipeline with the trial's values applied as overrides.

    What belongs to one trial (its MLflow logger, its progress line) comes through Keras
    Tuner's own arguments: `Tuner.run_trial` forwards keyword arguments to `fit`.
    """

    def __init__(self, job: TuningConfig, base: dict, prepared: Prepared | None = None):
        super().__init__(name="pipeline")
        self.job, self.base = job, base
        self._splits: dict[str, object] = {}  # loaded data by data section: loaded once
        if prepared is not None:
            self._splits[self._key(prepared.cfg)] = prepared.splits

    @staticmethod
    def _key(cfg) -> str:
        """The data a config loads: its data section and the seed that splits it."""
        seed = cfg.data.seed if cfg.data.seed is not None else cfg.train.seed
        data = cfg.data.model_dump(mode="json", exclude={"seed"})
        return json.dumps([data, seed], sort_keys=True)

    def prepared(self, hp) -> Prepared:
        """The trial's prepared pipeline (its data loaded once per data section)."""
        values = {path: declare(hp, path, p) for path, p in self.job.space.items()}
        cfg = validate(apply_overrides(self.base, as_overrides(values)))
        p = prepare(cfg, splits=self._splits.get(self._key(cfg)))
        self._splits[self._key(cfg)] = p.splits
        return p

    def build(self, hp):
        # The trial's train.distribution and train.mixed_precision (a job's own settings
        # of them are overrides: tfdl.config.tuning) take effect in build, as in any run.
        return build(self.prepared(hp))

    def fit(self, hp, model, *args, log=None, progress=None, callbacks=(), **kwargs):
        p = self.prepared(hp)
        p = p.with_config(
            p.cfg.model_copy(update={"train": p.cfg.train.model_copy(update={"verbose": 0})})
        )
        # No run_dir, so no backup: an interrupted trial is run again from its start.
        history, _ = fit(
            model,
            p,
            callbacks=[*callbacks, *([progress] if progress else [])],
            epochs=kwargs.get("epochs"),
            initial_epoch=kwargs.get("initial_epoch", 0),
            log=log,
        )
        return history


class TrialProgress(keras.callbacks.Callback):
    """One line per epoch of a trial: the metrics `names`, the trial's time so far and an
    estimate of the search's time left (`left(trial_left, trial_total)`, None if unknown)."""

    def __init__(self, label: str, names, left):
        super().__init__()
        self.label, self.names, self.left = label, list(dict.fromkeys(names)), left

    def on_train_begin(self, logs=None):
        self.start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        elapsed, epochs = time.monotonic() - self.start, self.params["epochs"]
        total = elapsed / (epoch + 1) * epochs
        left = self.left(total - elapsed, total)
        logs = logs or {}
        shown = ", ".join(f"{k} {float(logs[k]):.4f}" for k in self.names if k in logs)
        eta = f"; search about {duration(left)} left" if left is not None else ""
        line = f"  {self.label}, epoch {epoch + 1}/{epochs}: {shown} ({duration(elapsed)}{eta})"
        print(line, flush=True)


def duration(seconds: float) -> str:
    """12 s, 3 min, 1.5 h: a duration as a person reads it."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def tracked(tuner_class):
    """A tuner class whose trials each run inside their own MLflow child run of the
    search's run `parent_id`; with `trials`, HandOver is raised when the next trial would
    be one more than that."""

    class Tracked(tuner_class):
        trials_run = 0  # by this process: none means the search had nothing left to do

        def __init__(self, *args, parent_id: str, trials: int | None = None, **kwargs):
            self.parent_id, self.trials = parent_id, trials
            self.durations: list[float] = []  # of this process's trials, for the estimate
            super().__init__(*args, **kwargs)

        def search(self, *args, **kwargs):
            if not dist_utils.is_chief_oracle():
                return super().search(*args, **kwargs)
            # Keras Tuner's chief, as its own search would be (serve_trials: why not it).
            if "verbose" in kwargs:
                self.oracle.verbose = kwargs["verbose"]
            self.save()
            serve_trials(self.oracle)

        def on_trial_begin(self, trial):
            # Stopping here rather than after the K-th trial: an oracle with no trial
            # left says so instead, and this process logs the results.
            if self.trials is not None and self.trials_run >= self.trials:
                raise HandOver
            super().on_trial_begin(trial)

        def run_trial(self, trial, *args, **kwargs):
            self.trials_run += 1
            values = decoded(self.hypermodel.job, trial.hyperparameters.values)
            done = self._done()
            label = f"trial {self._number(trial, done + 1 if done is not None else None)}"
            names = ("loss", "val_loss", self.oracle.objective.name)
            progress = TrialProgress(
                label, names, lambda rest, whole: self._left(rest, whole, done)
            )
            name = tracking.trial_name(trial.trial_id, values)
            # A worker's trials name it: which process of a distributed search ran which.
            tuner = self.tuner_id if _role() == "worker" else None
            opener = tracking.trial(self.parent_id, trial.trial_id, name, tuner_id=tuner)
            start = time.monotonic()
            with tracking.run_lifecycle(
                opener,
                kind="trial",
                interrupted=INTERRUPTED_SEARCH,
                setup=lambda run_id: tracking.log_trial_values(run_id, values),
            ) as run_id:
                log = tracking.epoch_logger(run_id)
                result = super().run_trial(trial, *args, log=log, progress=progress, **kwargs)
            self.durations.append(time.monotonic() - start)
            return result

        def _number(self, trial, done: int | None) -> str:
            """The trial as its lines name it: `done` of those planned ("3 of 10"); in a
            worker, whose oracle counts nothing here, its place in the search instead
            (Keras Tuner numbers trials from 0 as it makes them); else its id."""
            if done is None and trial.trial_id.isdigit() and _role() == "worker":
                done = int(trial.trial_id) + 1
            return f"{done} of {planned(self.hypermodel.job)}" if done else trial.trial_id

        def _done(self) -> int | None:
            # A worker's oracle is a client of the chief's: it holds no trials to count.
            trials = getattr(self.oracle, "trials", None)
            return sum(t.score is not None for t in trials.values()) if trials is not None else None

        def _left(self, trial_left: float, trial_total: float, done: int | None):
            total = planned(self.hypermodel.job)
            if done is None or not isinstance(total, int):
                return None
            per_trial = statistics.mean(self.durations) if self.durations else trial_total
            return trial_left + per_trial * max(total - done - 1, 0)

        def on_trial_end(self, trial):
            with signals_deferred():  # Keras Tuner rewrites its state files: not half-way
                self._end_trial(trial)

        def _end_trial(self, trial):
            super().on_trial_end(trial)
            # A worker's oracle is a client of the chief's: ask it, do not read its state.
            score = self.oracle.get_trial(trial.trial_id).score
            best = self.oracle.get_best_trials(1)
            which = self._number(trial, self._done())
            score = "failed" if score is None else f"{score:.4f}"
            best = f"{best[0].score:.4f}" if best and best[0].score is not None else "-"
            metric = self.oracle.objective.name
            print(f"trial {which}: {metric} {score}, best so far {best}", flush=True)

    Tracked.__name__ = f"Tracked{tuner_class.__name__}"
    return Tracked


def serve_trials(oracle) -> None:
    """Serve the oracle to the workers as Keras Tuner's chief does (its OracleServicer on
    KERASTUNER_ORACLE_IP:PORT) until every worker it met has been told the search is over
    and no trial is under way. Keras Tuner's own loop (oracle_chief.start_server) looks
    for that end every 20 s once the first worker is told; this one every 0.5 s, so the
    search ends with its last trial. A port already taken raises (RuntimeError)."""
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    servicer = oracle_chief.OracleServicer(oracle)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    server.add_insecure_port(
        f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    )
    server.start()
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            time.sleep(0.5)
    finally:
        server.stop(grace=None)


def setup_devices(job: TuningConfig):
    """GPUs grow their memory as needed. Returns no strategy for Keras Tuner: each trial's
    model is built in its train.distribution's scope by tfdl.training.build."""
    from tfdl.distribute import grow_gpu_memory

    grow_gpu_memory()
    return None


def _parent_file(name: str) -> Path:
    return project_dir(name) / "mlflow_parent_run"


def _wait_for_parent(name: str, timeout: float = 300) -> str:
    """Workers learn the parent run from the chief, which writes it before it serves."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if _parent_file(name).exists():
            return _parent_file(name).read_text().strip()
        time.sleep(0.5)
    raise TimeoutError(f"no chief started search {name} within {timeout:.0f} s")


def make_tuner(
    job: TuningConfig,
    name: str,
    base: dict,
    *,
    parent_id: str,
    overwrite: bool = False,
    strategy=None,
    prepared: Prepared | None = None,
    trials: int | None = None,
):
    """The tracked Keras Tuner of the job, recording its trials under run `parent_id`;
    `prepared`: the base pipeline already prepared (its data is reused); `trials`: at
    most so many, then HandOver."""
    objective = kt.Objective(job.objective.metric, direction=job.objective.direction)
    common = dict(
        hypermodel=PipelineHyperModel(job, base, prepared),
        parent_id=parent_id,
        trials=trials,
        objective=objective,
        executions_per_trial=job.executions_per_trial,
        seed=job.seed,
        directory=str(project_dir(name).parent),
        project_name=name,
        overwrite=overwrite,
        distribution_strategy=strategy,
        max_consecutive_failed_trials=3,
    )
    cls = tracked(TUNERS[job.tuner])
    if job.tuner == "hyperband":
        epochs = job.epochs or validate(base).train.epochs
        return cls(max_epochs=epochs, factor=job.hyperband_factor, **common)
    return cls(max_trials=job.max_trials, **common)


def search(
    job: TuningConfig,
    base: dict,
    *,
    name: str,
    overwrite: bool = False,
    prepared: Prepared | None = None,
) -> SearchResult | None:
    """Run (or continue) the search in this process; returns its results, or None in a
    worker process. `prepared`: the base pipeline already prepared (its data is reused
    by the trials)."""
    role = _role()
    with _tuner_settings():
        if role == "worker":  # the chief owns the parent run; a worker only adds trials
            return _search(job, base, name, role, _wait_for_parent(name), prepared)
        # The parent is ended KILLED or FAILED by whatever stops the search, setting up
        # the tuner included; the same command reopens it (tracking.search_parent).
        with search_run(job, base, name, overwrite) as parent_id:
            return _search(job, base, name, role, parent_id, prepared)


def run_trials(job: TuningConfig, base: dict, name: str, parent_id: str | None):
    """A child process's share of the search (tfdl.search_workers): at most
    `job.worker_trials` trials under the parent run `parent_id`, which another process
    owns (None: a worker's chief names it). Raises HandOver while trials are left; the
    child that finds none left, or the chief, logs the results and returns them (None in
    a worker)."""
    role = _role()
    with _tuner_settings():
        if parent_id is None:  # a worker started by hand: its chief names the run
            parent_id = _wait_for_parent(name)
        return _search(job, base, name, role, parent_id, None, job.worker_trials)


class _NoRetracingWarning(logging.Filter):
    """Every trial builds a new model, and with it new tf.functions of the same Python
    code: TensorFlow counts those as one function traced again and again and warns twice
    per process, a warning about its own heuristic, not the search (and with workers, a
    pair from every process)."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


@contextlib.contextmanager
def _tuner_settings():
    """Keras Tuner quiet about failed trials meanwhile, TensorFlow about retracing; the
    dtype policy kept."""
    policy, debug = keras.mixed_precision.global_policy(), kt_config.DEBUG
    # A failed trial's traceback goes to its run's error.txt, not to the terminal.
    kt_config.DEBUG = False
    quiet, tf_logger = _NoRetracingWarning(), logging.getLogger("tensorflow")
    tf_logger.addFilter(quiet)
    try:
        yield
    finally:  # all are process-wide: leave them as they were
        keras.mixed_precision.set_global_policy(policy)
        kt_config.DEBUG = debug
        tf_logger.removeFilter(quiet)


def _search(job, base, name, role, parent_id, prepared, trials=None) -> SearchResult | None:
    strategy = setup_devices(job)
    if role == "chief":
        project_dir(name).mkdir(parents=True, exist_ok=True)
        write_whole(_parent_file(name), parent_id)
    # A child reloads the search at every hand-over: Keras Tuner's "Reloading Tuner" line
    # would break into the progress lines every K trials.
    quiet = contextlib.redirect_stdout(io.StringIO()) if trials else contextlib.nullcontext()
    with quiet:
        tuner = make_tuner(
            job,
            name,
            base,
            parent_id=parent_id,
            strategy=strategy,
            prepared=prepared,
            trials=trials,
        )
    # Keras Tuner collects garbage twice before every build; over TensorFlow's heap that
    # took 0.5 s each (benchmarks/results/analysis.md). What exists now lives for the
    # whole search: freezing it leaves the collector only what trials create.
    gc.freeze()
    try:
        tuner.search(verbose=0)
    finally:
        gc.unfreeze()  # a caller's later garbage is collectable again
    if role == "worker":
        return None
    result = summarise(tuner, job, base)
    if tuner.trials_run or not tracking.has_metric(parent_id, f"best_{job.objective.metric}"):
        log_result(tuner, job, base, parent_id, result)
    return SearchResult(
        parent_id, job.objective.metric, result["values"], result["score"], result["trials"]
    )


def summarise(tuner, job: TuningConfig, base: dict) -> dict:
    """One row per trial, and the best trial's values and score."""
    rows = []
    for trial in sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id):
        values = decoded(job, trial.hyperparameters.values)
        rows.append(
            {"trial": trial.trial_id, "status": trial.status, "score": trial.score, **values}
        )
    best = tuner.oracle.get_best_trials(1)
    if not best or best[0].score is None:
        return {"values": {}, "score": None, "trials": rows, "best_trial": None}
    values = decoded(job, best[0].hyperparameters.values)
    return {"values": values, "score": best[0].score, "trials": rows, "best_trial": best[0]}


def log_result(tuner, job: TuningConfig, base: dict, parent_id: str, result: dict) -> None:
    import pandas as pd

    from tfdl.plots import objective_plot

    if result["best_trial"] is None:
        raise RuntimeError("no trial of the search finished")
    table = pd.DataFrame(result["trials"])
    table = table.map(lambda v: json.dumps(v) if isinstance(v, list) else v)
    best_raw = apply_overrides(base, as_overrides(result["values"]))
    pipeline = validate(best_raw).to_dict()
    pipeline["description"] = f"Best of search {tuner.project_name}: {json.dumps(result['values'])}"
    best = tuner.hypermodel.prepared(result["best_trial"].hyperparameters)
    with warnings.catch_warnings():
        # The trial's checkpoint holds its optimizer's state too; the logged model is for
        # predictions, and Keras says it leaves that state out.
        warnings.filterwarnings("ignore", "Skipping variable loading for optimizer")
        model = tuner.get_best_models(1)[0]
    tracking.log_search(
        parent_id,
        table=table,
        best=result,
        metric=job.objective.metric,
        plot=lambda path: objective_plot(
            table, job.objective.metric, job.objective.direction, path
        ),
        pipeline=pipeline,
        model=model,
        sample=best.sample(),
        spec=best.spec.to_dict(),
        register_as=job.register_as,
    )
