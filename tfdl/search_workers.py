"""A long search's trials run in child processes, each replaced after `worker_trials`;
`tfdl tune --workers N` runs Keras Tuner's chief and N workers the same way.

TensorFlow keeps every function it traced reachable for the life of its process, past
`keras.backend.clear_session()` (tensorflow/tensorflow#61791): one process running a whole
search grows by megabytes per trial. So `tfdl tune` keeps the search's run in its own
process, which runs no trial (TensorFlow alone takes 0.8 GiB; it is loaded there only if
checking the data needs it), and runs the trials in a child process that exits after K
trials with the status HANDOVER; the next child resumes the search from Keras Tuner's
project folder, as a search resumes after Ctrl-C, until the oracle has no trial left.
The child that runs the last trial logs the search's results.

With workers, the parent holds the search's run just the same and starts a chief child
(Keras Tuner's oracle, served on 127.0.0.1; it logs the results at the end) and N worker
children (one GPU each where there are GPUs), each a slot whose child is replaced on
HANDOVER: the next one has the same Keras Tuner id, so the chief hands it the trial its
predecessor declined. The workers' finished-trial lines reach the terminal through the
parent, one whole line each.

A child is `python -m tfdl.search_workers ORDER REPORT`: ORDER is a pickle of the job as
the parent loaded it (a file edited meanwhile changes nothing), and the child leaves its
report (done, handover, interrupted or failed, and the runs it ended) in REPORT. This
module holds what the parent needs of a search without TensorFlow; tfdl.search, the part
that runs trials, imports it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from tfdl import store
from tfdl.errors import ConfigError
from tfdl.signals import forget_caught_interrupt, signals_deferred

HANDOVER = 75  # a child ran its K trials and the search has more: start the next one
STOP_WAIT_S = 60  # for a child to end its trial KILLED after SIGTERM, before SIGKILL
POLL_S = 0.2  # how often the parent looks for children that have exited
AFTER_CHIEF_S = 10  # for workers to exit by themselves once their chief has
MAX_WORKERS = 256  # `tfdl tune --workers N`: each a TensorFlow process of about 1 GiB
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


@dataclass(eq=False)
class Slot:
    """Where a search's trials run, one child process after another (each replaced by the
    next on HANDOVER): the search alone ("trials"), Keras Tuner's chief or a worker, as
    set by `env` (Keras Tuner's variables and the worker's GPU)."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    report: Path | None = None  # where its child leaves its report
    proc: subprocess.Popen | None = None  # the child running now, or last
    reader: threading.Thread | None = None  # of its output, relayed line by line

    @property
    def relayed(self) -> bool:
        """Side by side with others, it prints through this process (tfdl.search_workers
        relays its finished-trial lines whole); alone, to the terminal itself."""
        return self.name != "trials"


def in_children(
    job, base: dict, name: str, overwrite: bool, workers: int | None = None, port=None
) -> SearchResult | None:
    """The search (checked by tfdl.tune) with its trials in child processes: one after
    another, or with `workers`, Keras Tuner's chief and that many workers side by side on
    127.0.0.1:`port` (None: a free one), every one of them replaced as the search alone
    is. This process holds the search's run throughout. None in a worker started by hand
    (`tfdl tune --worker i`): its chief holds the run."""
    if workers is None and role() == "worker":
        return _children(job, base, name, None, [Slot("trials")])
    with search_run(job, base, name, overwrite) as parent_id:
        slots = [Slot("trials")]
        if workers is not None:
            port, gpus = port or free_port(), visible_gpus()
            slots = cluster(workers, port, gpus)
            on = f", one GPU each of {', '.join(gpus)}" if gpus else ""
            print(f"search {name}: a chief and {workers} workers on 127.0.0.1:{port}{on}")
        return _children(job, base, name, parent_id, slots)


def cluster(workers: int, port: int, gpus: list[str]) -> list[Slot]:
    """Keras Tuner's chief and `workers` workers on 127.0.0.1:`port`: worker i on GPU
    `gpus[i % len(gpus)]` when there are GPUs; the chief, which trains nothing, on none."""
    oracle = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port)}
    hidden = {"CUDA_VISIBLE_DEVICES": "-1"} if gpus else {}
    slots = [Slot("chief", {**oracle, "KERASTUNER_TUNER_ID": "chief", **hidden})]
    for i in range(workers):
        gpu = {"CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)]} if gpus else {}
        slots.append(Slot(f"worker {i}", {**oracle, "KERASTUNER_TUNER_ID": f"tuner{i}", **gpu}))
    return slots


def visible_gpus() -> list[str]:
    """The GPUs a search may use, as CUDA_VISIBLE_DEVICES names them: those it lists
    already, else every GPU nvidia-smi lists (none without an NVIDIA driver). Asked
    without TensorFlow, which would hold memory on every GPU in this process."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        names = [n.strip() for n in listed.split(",")]
        # CUDA reads the list up to its first entry that names no device, such as -1.
        return list(itertools.takewhile(lambda n: n and not n.startswith("-"), names))
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    found = [line for line in out.stdout.splitlines() if line.startswith("GPU ")]
    return [str(i) for i in range(len(found))] if out.returncode == 0 else []


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on now (the chief takes it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children(job, base: dict, name: str, parent_id: str | None, slots) -> SearchResult | None:
    """Run the slots' children until the search ends; the first slot's result (the
    search alone's, or the chief's; a worker's is None)."""
    folder = Path(tempfile.mkdtemp(prefix="tfdl-search-"))
    try:
        order = folder / "order.pickle"
        order.write_bytes(
            pickle.dumps(dict(job=job, base=base, name=name, parent_id=parent_id, pid=os.getpid()))
        )
        for i, slot in enumerate(slots):
            slot.report = folder / f"report-{i}.pickle"
        return _supervise(order, slots)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _supervise(order: Path, slots: list[Slot]) -> SearchResult | None:
    """Start every slot's child, start the next where one hands over, relay the finished
    trials' lines, until the first slot's child is done. A child that fails or is stopped
    by someone else stops the others, as Ctrl-C here does."""
    lines: queue.SimpleQueue = queue.SimpleQueue()
    running, result, done_at = list(slots), None, None
    try:
        for slot in slots:
            _start(slot, order, lines)
        while running:
            _relay(lines, POLL_S)
            for slot in [s for s in running if s.proc.poll() is not None]:
                if slot.reader is not None:  # its last lines come before what follows
                    slot.reader.join(timeout=5)  # (a process it left could hold its output)
                    _relay(lines, 0)
                report = _outcome(slot)
                if report["outcome"] == "handover":
                    _start(slot, order, lines)
                    continue
                running.remove(slot)
                if report["outcome"] == "interrupted":  # stopped by someone else: as Ctrl-C
                    raise KeyboardInterrupt
                if report["outcome"] != "done":
                    raise _error(report)
                if slot is slots[0]:
                    result, done_at = report["result"], time.monotonic()
            if done_at is not None and running and time.monotonic() - done_at > AFTER_CHIEF_S:
                # The chief ends once every worker it met has been told the search is over:
                # one still here never reached it, and never will.
                _stop_all(running)
                running.clear()
    except KeyboardInterrupt:
        raise Interrupted(_stop_all(slots)) from None
    except BaseException:
        _stop_all(slots)
        raise
    return result


def _start(slot: Slot, order: Path, lines: queue.SimpleQueue) -> None:
    """Start the slot's next child: `python -m tfdl.search_workers ORDER REPORT`."""
    slot.report.unlink(missing_ok=True)
    sys.stdout.flush()  # what this process printed comes before what the child prints
    sys.stderr.flush()
    with signals_deferred():  # Ctrl-C lands once the child is known: it is stopped
        # A session of its own: Ctrl-C at the terminal reaches this process only,
        # which stops the child once (a second signal could cut its trial's ending).
        slot.proc = subprocess.Popen(
            [sys.executable, "-m", "tfdl.search_workers", str(order), str(slot.report)],
            env={**os.environ, **slot.env},
            start_new_session=True,
            stdout=subprocess.PIPE if slot.relayed else None,
            encoding="utf-8",
            errors="replace",
        )
    slot.reader = None
    if slot.relayed:
        slot.reader = threading.Thread(
            target=_forward, args=(slot, slot.proc.stdout, lines), daemon=True
        )
        slot.reader.start()


def _forward(slot: Slot, output, lines: queue.SimpleQueue) -> None:
    """Hand the child's lines of output to the parent's main thread, to its end."""
    for line in output:
        lines.put((slot, line))


def _relay(lines: queue.SimpleQueue, wait: float) -> None:
    """Print the finished-trial lines the children sent, whole and each naming its
    worker (their epochs' lines, side by side, would interleave: they stay quiet); wait
    up to `wait` seconds for the first."""
    try:
        item = lines.get(timeout=wait) if wait else lines.get_nowait()
        while True:
            slot, line = item
            if line.startswith("trial "):
                print(f"{line.rstrip()} ({slot.name})", flush=True)
            item = lines.get_nowait()
    except queue.Empty:
        return


def _outcome(slot: Slot) -> dict:
    """The report of the slot's child, which has exited."""
    found = _read(slot.report)
    if found:
        return found
    code, pid = slot.proc.returncode, slot.proc.pid
    how = (
        f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
    )
    return {"outcome": "failed", "message": f"its {slot.name} process {pid} {how}"}


def _stop_all(slots: list[Slot]) -> list:
    """Stop the slots' children as Ctrl-C stops a search (a trial under way ends KILLED),
    workers before the chief they talk to, and wait for them (killed if not stopped
    within STOP_WAIT_S); returns the runs they ended."""
    with signals_deferred():  # a second Ctrl-C must not leave one running on its own
        for group in (
            [s for s in slots if s.name != "chief"],
            [s for s in slots if s.name == "chief"],
        ):
            live = [s.proc for s in group if s.proc is not None and s.proc.poll() is None]
            for proc in live:
                proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_WAIT_S
            for proc in live:
                try:
                    proc.wait(timeout=max(deadline - time.monotonic(), 0))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    return [e for s in slots if s.report is not None for e in _read(s.report).get("ended", ())]


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


def main(order_file: str, report_file: str) -> int:
    """A child: run at most `worker_trials` trials of the search in ORDER, leave its
    report in REPORT and exit 0 (the search is done), HANDOVER, 130 (interrupted) or 1."""
    # Its parent stops it with SIGTERM, as Ctrl-C stops a search: its trial ends KILLED.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    order = pickle.loads(Path(order_file).read_bytes())
    _stop_without(order["pid"])
    report = _run(order)
    lifecycle = sys.modules.get("tfdl.tracking.lifecycle")
    report["ended"] = lifecycle.endings() if lifecycle else []
    write_whole(Path(report_file), pickle.dumps(report))
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

    code = child_main(sys.argv[1], sys.argv[2])
    forget_caught_interrupt()
    gc.freeze()  # exit as the tfdl command does (tfdl.cli.run): a second faster per child
    sys.exit(code)
