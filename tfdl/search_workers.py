"""A long search's trials run in child processes, each replaced after `worker_trials`.

TensorFlow keeps every function it traced reachable for the life of its process, past
`keras.backend.clear_session()` (tensorflow/tensorflow#61791): one process running a whole
search grows by megabytes per trial. So `tfdl tune` keeps the search's run in its own
process, which runs no trial (TensorFlow alone takes 0.8 GiB; it is loaded there only if
checking the data needs it), and runs the trials in a child process that exits after K
trials with the status HANDOVER; the next child resumes the search from Keras Tuner's
project folder, as a search resumes after Ctrl-C, until the oracle has no trial left.
The child that runs the last trial logs the search's results.

A child is `python -m tfdl.search_workers ORDER`: ORDER is a pickle of the job as the
parent loaded it (a file edited meanwhile changes nothing), and the child leaves its
report (done, handover, interrupted or failed, and the runs it ended) beside it. This
module holds what the parent needs of a search without TensorFlow; tfdl.search, the part
that runs trials, imports it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from tfdl import store
from tfdl.errors import ConfigError
from tfdl.signals import forget_caught_interrupt, signals_deferred

HANDOVER = 75  # a child ran its K trials and the search has more: start the next one
STOP_WAIT_S = 60  # for a child to end its trial KILLED after SIGTERM, before SIGKILL
INTERRUPTED_SEARCH = "interrupted: run the search again to resume it"


@dataclass
class SearchResult:
    parent_id: str
    metric: str  # the objective
    best_values: dict
    best_score: float | None
    trials: list[dict]


class HandOver(Exception):
    """Raised in a child as it is handed trial K + 1: the oracle keeps that trial as this
    tuner's ongoing one, and the next child (same tuner id) is handed it again."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped the child: `ended` are the runs it ended (its trial, KILLED)."""

    def __init__(self, ended=()):
        super().__init__()
        self.ended = list(ended)


class TrialsProcessError(RuntimeError):
    """A child failed; an error the child reported keeps its type's name as a subclass."""


class _ChildTraceback(Exception):
    """The child's traceback, as the cause of the error raised here (error.txt shows both)."""

    def __str__(self):
        return "\n" + self.args[0]


def write_whole(path: Path, data: bytes | str) -> None:
    """Write `path` whole or not at all: into a file beside it, renamed over it. A file
    written in place and cut short (kill -9, a full disk) would stop the next reader."""
    side = path.with_name(path.name + ".part")
    try:
        side.write_bytes(data.encode() if isinstance(data, str) else data)
        side.replace(path)
    except OSError:
        side.unlink(missing_ok=True)  # the room it took is the disk's again
        raise


def project_dir(name: str) -> Path:
    """Keras Tuner's project folder (its oracle, trials and checkpoints) inside the store."""
    return store.run_dir(name).parent.parent / "tuner" / name


def role() -> str:
    """chief, worker or alone, from Keras Tuner's own environment variables."""
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID")
    if not tuner_id or "KERASTUNER_ORACLE_IP" not in os.environ:
        return "alone"
    return "chief" if tuner_id == "chief" else "worker"


def planned(job) -> int | str:
    """How many trials the search will run: a grid may have fewer points than max_trials;
    Hyperband decides as it goes."""
    if job.tuner == "hyperband":
        return "?"
    if job.tuner != "grid":
        return job.max_trials
    points = 1
    for p in job.space.values():
        match p.type:
            case "choice":
                points *= len(p.values)
            case "bool":
                points *= 2
            case _:  # int, or float with a step (the schema checks grids have one)
                points *= int(round((p.max - p.min) / p.step)) + 1
    return min(points, job.max_trials)


def in_processes(job, role_: str) -> bool:
    """Whether the job's trials run in child processes: `worker_trials` is set, this
    process would run trials (a chief only serves them) and more are planned than one
    child runs (Hyperband's count is unknown)."""
    k, total = job.worker_trials, planned(job)
    return k is not None and role_ != "chief" and (not isinstance(total, int) or total > k)


@contextlib.contextmanager
def search_run(job, base: dict, name: str, overwrite: bool):
    """The search's parent run, new or reopened to resume (tracking.search_parent), ended
    by whatever ends the block; `overwrite` starts afresh, Keras Tuner's folder too."""
    from tfdl import tracking
    from tfdl.config import validate

    experiment = validate(base).tracking.experiment
    # How the trials are spread over processes is no part of the search: changing it
    # resumes the search, and the digest of a search recorded before it stays the same.
    settings = job.model_dump(mode="json", exclude={"worker_trials"})
    opener = tracking.search_parent(name, settings, experiment, overwrite)
    with tracking.run_lifecycle(opener, kind="search", interrupted=INTERRUPTED_SEARCH) as run_id:
        if overwrite:  # only once the search is this process's: a refused one deletes nothing
            shutil.rmtree(project_dir(name), ignore_errors=True)
        yield run_id


# ------------------------------------------------------------------------------ the parent


def in_children(job, base: dict, name: str, overwrite: bool) -> SearchResult | None:
    """The search (checked by tfdl.tune) with its trials in child processes, one after
    another; None in a worker of a distributed search."""
    if role() == "worker":  # the chief owns the search's run; workers wait for it
        return _children(job, base, name, None)
    with search_run(job, base, name, overwrite) as parent_id:
        return _children(job, base, name, parent_id)


def _children(job, base: dict, name: str, parent_id: str | None) -> SearchResult | None:
    """Start one child after another until one ends otherwise than HANDOVER."""
    folder = Path(tempfile.mkdtemp(prefix="tfdl-search-"))
    try:
        order = folder / "order.pickle"
        order.write_bytes(
            pickle.dumps(dict(job=job, base=base, name=name, parent_id=parent_id, pid=os.getpid()))
        )
        while (report := _child(order))["outcome"] == "handover":
            pass
        if report["outcome"] == "done":
            return report["result"]
        if report["outcome"] == "interrupted":  # stopped by someone else: as Ctrl-C here
            raise Interrupted(report["ended"])
        raise _error(report)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _child(order: Path) -> dict:
    """Run one child to its end and return its report."""
    report = order.with_name("report.pickle")
    report.unlink(missing_ok=True)
    sys.stdout.flush()  # what this process printed comes before what the child prints
    sys.stderr.flush()
    proc = None
    try:
        with signals_deferred():  # Ctrl-C lands once the child is known: it is stopped
            # A session of its own: Ctrl-C at the terminal reaches this process only,
            # which stops the child once (a second signal could cut its trial's ending).
            cmd = [sys.executable, "-m", "tfdl.search_workers", str(order)]
            proc = subprocess.Popen(cmd, start_new_session=True)
        code = proc.wait()
    except KeyboardInterrupt:
        if proc is not None:
            _stop(proc)
        raise Interrupted(_read(report).get("ended", ())) from None
    except BaseException:
        if proc is not None:
            _stop(proc)
        raise
    found = _read(report)
    if found:
        return found
    how = (
        f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
    )
    return {"outcome": "failed", "message": f"its trials process {proc.pid} {how}"}


def _stop(proc: subprocess.Popen) -> None:
    """Stop the child as Ctrl-C stops a search (its trial ends KILLED) and wait for it;
    kill it if it has not stopped within STOP_WAIT_S."""
    with signals_deferred():  # a second Ctrl-C must not leave it running on its own
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _read(report: Path) -> dict:
    try:
        return pickle.loads(report.read_bytes())
    except (OSError, EOFError, pickle.UnpicklingError):
        return {}


def _error(report: dict) -> Exception:
    """The child's error to raise here: a ConfigError as it was; another error as a
    TrialsProcessError named as the child's was, so its line and tag read the same."""
    if report.get("config"):
        err = ConfigError(*report["config"])
    elif report.get("type"):
        err = type(report["type"], (TrialsProcessError,), {})(report["message"])
    else:
        err = TrialsProcessError(report["message"])
    if report.get("traceback"):
        err.__cause__ = _ChildTraceback(report["traceback"])
    return err


# ------------------------------------------------------------------------------- a child


def main(order_file: str) -> int:
    """A child: run at most `worker_trials` trials of the search in ORDER, leave a report
    beside it and exit 0 (the search is done), HANDOVER, 130 (interrupted) or 1."""
    # Its parent stops it with SIGTERM, as Ctrl-C stops a search: its trial ends KILLED.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    order = pickle.loads(Path(order_file).read_bytes())
    _stop_without(order["pid"])
    report = _run(order)
    lifecycle = sys.modules.get("tfdl.tracking.lifecycle")
    report["ended"] = lifecycle.endings() if lifecycle else []
    write_whole(Path(order_file).with_name("report.pickle"), pickle.dumps(report))
    return {"done": 0, "handover": HANDOVER, "interrupted": 130}.get(report["outcome"], 1)


def _run(order: dict) -> dict:
    try:
        from tfdl.runtime import import_tensorflow

        import_tensorflow()
        from tfdl.search import run_trials

        result = run_trials(order["job"], order["base"], order["name"], order["parent_id"])
    except HandOver:
        return {"outcome": "handover"}
    except KeyboardInterrupt:
        return {"outcome": "interrupted"}
    except Exception as err:
        config = isinstance(err, ConfigError)
        return {
            "outcome": "failed",
            "type": type(err).__name__,
            "message": str(err),
            "config": (err.field, err.problem, err.allowed, err.settings) if config else None,
            "traceback": traceback.format_exc(),
        }
    return {"outcome": "done", "result": result}


def _stop_without(parent_pid: int) -> None:
    """A child whose parent is gone (killed outright) stops as if interrupted, rather than
    run trials for a search no process owns."""

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="tfdl-parent-watch", daemon=True).start()


if __name__ == "__main__":
    # Through the imported module: HandOver raised by tfdl.search must be the class caught.
    import gc

    from tfdl.search_workers import main as child_main

    code = child_main(sys.argv[1])
    forget_caught_interrupt()
    gc.freeze()  # exit as the tfdl command does (tfdl.cli.run): a second faster per child
    sys.exit(code)
