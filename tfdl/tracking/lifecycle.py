"""One run's life: open it (or reopen it to resume), then end it FINISHED, KILLED or FAILED.

Every run tfdl records (a training, a learning-rate sweep, a search and each of its
trials) lives inside `run_lifecycle`, so no clean shutdown leaves a run RUNNING and every
failure's reason shows in the UI. The callers differ only in how the run is opened.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import mlflow
from mlflow.entities import Param, RunTag
from mlflow.exceptions import RestException
from mlflow.tracking import MlflowClient

from tfdl.config import flatten
from tfdl.errors import ConfigError
from tfdl.signals import signals_deferred
from tfdl.store import artifact_root, open_sqlite, shared, tracking_uri
from tfdl.tracking import liveness, outage

MAX_TAG = 5000  # MLflow caps tag values; an error message is cut to fit
MAX_SLUG = 100  # characters of an experiment's name in its folder's (a file name: 255 bytes)
# Creating a new store's tables is routine, not news: keep stderr for errors.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
# MLflow retries a request to a server that does not answer for minutes, silently (7
# times, backing off to 2 min); tfdl's own retries of epochs say so (tracking/outage.py).
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def client(write: bool = True) -> MlflowClient:
    """The store's client. MLflow's own `runs:/` URIs and artifact helpers resolve against
    the global tracking URI, so it is pointed at the same store here, in one place. A
    writer's sqlite store is readied first (made by one process at a time when new, WAL);
    a reader (`write=False`) leaves the store's files as they are."""
    uri = tracking_uri()
    if write:
        open_sqlite(uri)
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


@dataclass(frozen=True)
class Ending:
    """How a run of this process ended: what the CLI reports after an interrupt or crash."""

    run_id: str
    kind: str  # training, lr_find, search, trial
    status: str  # FINISHED, KILLED, FAILED
    traceback_saved: bool = False  # FAILED: its error.txt holds the traceback


_endings: list[Ending] = []
_before_end: dict[str, Callable[[], None]] = {}  # run id -> what to store before it ends


def before_end(run_id: str, store: Callable[[], None]) -> None:
    """Have `store()` (an epoch logger's wait) called before run `run_id` is ended."""
    _before_end[run_id] = store


def endings() -> list[Ending]:
    """The runs this process ended, oldest first."""
    return list(_endings)


def error_message(err: BaseException) -> str:
    """`Type: message` as kept in the `tfdl.error` tag, cut to MLflow's limit."""
    return f"{type(err).__name__}: {err}"[:MAX_TAG]


@contextlib.contextmanager
def run_lifecycle(
    open_run: Callable[[], str],
    *,
    kind: str,
    interrupted: str,
    setup: Callable[[str], None] | None = None,
) -> Iterator[str]:
    """Open a run with `open_run()` (it creates or reopens one and returns its id), run
    `setup(run_id)` (what the run records first), yield the id, and end the run:
    FINISHED; KILLED on Ctrl-C or SIGTERM, with `interrupted` as its `tfdl.error` tag;
    FAILED on any other error, the error as the tag and its traceback as `error.txt`.

    Opening and ending hold SIGINT/SIGTERM: a signal that comes meanwhile is raised once
    the run is guarded, so it can neither leave the run RUNNING nor cut its ending short.
    """
    run_id = None
    try:
        with signals_deferred():
            run_id = open_run()
        if setup is not None:
            setup(run_id)
        yield run_id
    except KeyboardInterrupt:
        if run_id is not None:
            _end(run_id, kind, "KILLED", interrupted)
        raise
    except BaseException as err:
        if run_id is not None:
            _end(run_id, kind, "FAILED", error_message(err), traceback.format_exc())
        raise
    else:
        _end(run_id, kind, "FINISHED")


def _end(run_id: str, kind: str, status: str, reason=None, trace=None) -> None:
    """End the run; a tracking server that does not answer gets the end kept for later
    (tfdl runs --upload), and TrackingOutage says where."""
    store = _before_end.pop(run_id, None)
    if store is not None:
        # Every finished epoch is stored before the run is marked. Its error (a second
        # Ctrl-C included) must not replace the run's own, nor keep the run from ending;
        # an outage has kept the epochs for tfdl runs --upload, ahead of the end.
        with contextlib.suppress(BaseException):
            store()
    c, saved = client(), False
    with signals_deferred():
        try:
            if reason is not None:
                c.set_tag(run_id, "tfdl.error", reason)
            if trace is not None:
                with contextlib.suppress(Exception):  # e.g. a full disk: the status matters
                    c.log_text(run_id, trace, "error.txt")
                    saved = True
            c.set_terminated(run_id, status)
        except Exception as err:
            if not outage.is_outage(err):
                raise
            outage.keep(run_id, {"call": "end", "status": status, "reason": reason})
            raise outage.TrackingOutage(outage.gave_up_message(run_id)) from None
        finally:
            liveness.release(run_id)
    _endings.append(Ending(run_id, kind, status, saved))


# ------------------------------------------------------------------------------ openers


def experiment_id(name: str) -> str:
    """The experiment's id, creating it (with its artifacts inside the store) if needed."""
    uri = tracking_uri()
    open_sqlite(uri)
    c = client()
    with shared(uri):  # processes starting together must not both create it
        exp = c.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        root = artifact_root(uri)
        location = (root / _slug(name)).as_uri() if root else None
        try:
            return c.create_experiment(name, artifact_location=location)
        except RestException as err:  # a server: no lock of ours, and another came first
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return c.get_experiment_by_name(name).experiment_id


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "experiment"
    if slug == name and len(slug) <= MAX_SLUG:
        return slug
    # Names that differ only in dropped characters, or past the cut, must not share a folder.
    return f"{slug[:MAX_SLUG]}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"


def _create(experiment_id_: str, name: str | None, tags: dict[str, str]) -> str:
    from mlflow.tracking.context.registry import resolve_tags

    # resolve_tags adds what MLflow's own start_run would: user, source, entry point.
    tags = resolve_tags(tags | liveness.owner_tags())
    run = client().create_run(experiment_id_, run_name=name, tags=tags)
    liveness.hold(run.info.run_id)
    return run.info.run_id


def new_run(experiment: str, *, name: str | None = None, tags=None) -> Callable[[], str]:
    """Opens a new run in `experiment`."""
    return lambda: _create(experiment_id(experiment), name, dict(tags or {}))


def reopened(run_id: str, field: str = "resume", allowed: str | None = None) -> Callable[[], str]:
    """Opens an interrupted run again (a resume): RUNNING, owned by this process, its old
    error cleared; refused (naming the setting `field`) while another process runs it."""

    def open_run() -> str:
        c = client()
        run = c.get_run(run_id)
        liveness.claim(run, field, allowed)
        c.update_run(run_id, status="RUNNING")
        owner = [RunTag(k, v) for k, v in liveness.owner_tags().items()]
        c.log_batch(run_id, tags=owner)
        for key in ("tfdl.error", liveness.STALE_REASON):
            if key in run.data.tags:
                c.delete_tag(run_id, key)
        return run_id

    return open_run


def search_parent(name: str, job: dict, experiment: str, overwrite: bool) -> Callable[[], str]:
    """Opens the parent run of search `name`: the earlier one when the search is re-run (so
    a resumed search stays one run), a new one when there is none or `overwrite`."""

    def open_run() -> str:
        c = client()
        exp_id = experiment_id(experiment)
        digest = hashlib.sha1(json.dumps(job, sort_keys=True).encode()).hexdigest()[:12]
        found = c.search_runs(
            [exp_id], f"tags.`tfdl.search` = '{name}'", order_by=["attributes.start_time DESC"]
        )
        # One process runs a search (workers join it through its chief): a second one
        # would share its parent run and delete its trials.
        key = "search-" + hashlib.sha1(f"{exp_id}/{name}".encode()).hexdigest()[:16]
        if not liveness.hold(key):
            query = f"tags.`tfdl.search` = '{name}' and attributes.status = 'RUNNING'"
            live = [r.info.run_id for r in c.search_runs([exp_id], query)]
            who = ", ".join([liveness.holder(key), *(f"run {r}" for r in live[:1])])
            raise ConfigError(
                name,
                f"search {name} is running already ({who.strip(', ') or 'another process'})",
                "wait for it to end, or join it as a worker (--chief / --worker)",
            )
        if found and not overwrite:
            if found[0].data.tags.get("tfdl.search_digest") != digest:
                raise ConfigError(
                    name,
                    "the search changed since its last run",
                    "overwrite, to start afresh",
                    ("overwrite",),
                )
            run_id = reopened(found[0].info.run_id, name)()
            liveness.hold(key, with_run=run_id)  # held again: released with the run
            return run_id
        for old in found:  # overwrite: the old search's run goes, and its trials with it
            trials = c.search_runs([exp_id], f"tags.mlflow.parentRunId = '{old.info.run_id}'")
            for run in [*trials, old]:
                c.delete_run(run.info.run_id)
        tags = {"tfdl.search": name, "tfdl.search_digest": digest, "tfdl.kind": "search"}
        run_id = _create(exp_id, f"search-{name}", tags)
        liveness.hold(key, with_run=run_id)
        log_params(run_id, flatten(job))  # the tuner's settings and space
        return run_id

    return open_run


def trial(
    parent_id: str, trial_id: str, name: str | None = None, tuner_id: str | None = None
) -> Callable[[], str]:
    """Opens a trial's nested run under the search's parent (`tuner_id`: the Keras Tuner
    worker running it, as the tag `tfdl.tuner_id`). An earlier, interrupted attempt at
    the same trial is deleted first: the trial is recorded once, by the attempt that ran
    it through."""

    def open_run() -> str:
        c = client()
        exp_id = c.get_run(parent_id).info.experiment_id
        query = f"tags.mlflow.parentRunId = '{parent_id}' and tags.`tfdl.trial_id` = '{trial_id}'"
        for stale in c.search_runs([exp_id], query):
            c.delete_run(stale.info.run_id)
        tags = {"mlflow.parentRunId": parent_id, "tfdl.trial_id": trial_id, "tfdl.kind": "trial"}
        if tuner_id is not None:
            tags["tfdl.tuner_id"] = tuner_id
        return _create(exp_id, name or f"trial-{trial_id}", tags)

    return open_run


def log_params(run_id: str, params: dict[str, str]) -> None:
    """Parameters in one batch (MLflow takes at most 100 per call)."""
    items = [Param(k, str(v)) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client().log_batch(run_id, params=items[i : i + 100])


@contextlib.contextmanager
def system_metrics(run_id: str, enabled: bool, resumed: bool = False) -> Iterator[None]:
    """MLflow's system metrics (CPU, memory, disk, network; GPU when present) sampled into
    the run while the block runs, when `enabled`; a resumed run continues their steps."""
    if not enabled:
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, resume_logging=resumed, tracking_uri=tracking_uri())
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()
