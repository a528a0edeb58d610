"""Who runs a run, and whether it still does.

A run RUNNING in the store may be training now, or may have been left by a process that
was killed (kill -9, a power loss) and will never end it. Every run tfdl opens records its
owner (`tfdl.host`, `tfdl.pid`) and a heartbeat (`tfdl.heartbeat`, Unix seconds) renewed
with each epoch, and its process holds a lock file for the run while it lives. On the
owner's machine the lock tells exactly: the kernel drops it when the process dies. From
another machine a heartbeat older than STALE_AFTER_S tells.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path

from tfdl.errors import ConfigError
from tfdl.store import STORE, artifact_root, tracking_uri

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the heartbeat alone tells
    fcntl = None

HOST, PID, HEARTBEAT = "tfdl.host", "tfdl.pid", "tfdl.heartbeat"
STALE_REASON = "tfdl.stale_reason"
# A run whose heartbeat is older than this (and whose lock cannot be checked) is stale. An
# epoch longer than this would make a live run look stale from another machine.
STALE_AFTER_S = float(os.environ.get("TFDL_STALE_AFTER_S", 900))

_held: dict[str, object] = {}  # lock key -> its open lock file, for the life of the run
_along: dict[str, list[str]] = {}  # run id -> other locks released with the run's


def owner_tags() -> dict[str, str]:
    return {HOST: socket.gethostname(), PID: str(os.getpid()), HEARTBEAT: beat()}


def beat() -> str:
    return str(int(time.time()))


def _lock_file(key: str) -> Path:
    root = artifact_root(tracking_uri())
    return (root.parent if root else STORE) / "locks" / f"{key}.lock"


def hold(key: str, with_run: str | None = None) -> bool:
    """Take the lock `key` (a run id, or a search's name) for this process's life, until
    `release(key)`, or with the run `with_run`'s; False when another process holds it (a
    lock that cannot be made at all leaves the heartbeat alone to tell: True)."""
    if fcntl is None:
        return True
    if key not in _held:
        path = _lock_file(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            file = open(path, "a")  # noqa: SIM115 (held open while the run lives)
        except OSError:
            return True
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            file.close()
            return False
        with contextlib.suppress(OSError):  # who holds it, for whoever is refused
            file.truncate(0)
            file.write(f"process {os.getpid()} on {socket.gethostname()}\n")
            file.flush()
        _held[key] = file
    if with_run is not None:
        _along.setdefault(with_run, []).append(key)
    return True


def release(key: str) -> None:
    """Drop the lock `key`, and those held along with it."""
    for other in _along.pop(key, []):
        release(other)
    file = _held.pop(key, None)
    if file is not None:
        with contextlib.suppress(OSError):
            _lock_file(key).unlink()
        file.close()


def holder(key: str) -> str:
    """Who holds the lock `key`, as its holder wrote it ("process 12 on host")."""
    try:
        return _lock_file(key).read_text().strip()
    except OSError:
        return ""


def _lock_taken(key: str) -> bool | None:
    """Whether a live process on this machine (this one included) holds the lock `key`;
    None where locks are unknown (Windows)."""
    if fcntl is None:
        return None
    if key in _held:
        return True
    path = _lock_file(key)
    if not path.exists():
        return False
    try:
        with open(path, "a") as file:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(file, fcntl.LOCK_UN)
    except OSError:
        return True
    return False


def liveness(run_id: str, status: str, tags: dict, start_ms: float | None) -> tuple[str, str]:
    """("live" | "stale" | "", why) of a run: "" when it is not RUNNING."""
    if status != "RUNNING":
        return "", ""
    host, pid = tags.get(HOST), tags.get(PID)
    if host == socket.gethostname():
        if _lock_taken(run_id) is not False:
            return "live", f"process {pid} on this machine"
        return "stale", f"process {pid} on {host} is gone"
    last = _float(tags.get(HEARTBEAT)) or (start_ms or 0) / 1000
    age = time.time() - last
    where = f"process {pid} on {host}" if host else "its process"
    if age > STALE_AFTER_S:
        return "stale", f"no heartbeat from {where} for {age / 60:.0f} min"
    return "live", f"{where}, heartbeat {age:.0f} s ago"


def _float(text) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def state_of(run) -> tuple[str, str]:
    """`liveness` of an MLflow Run."""
    return liveness(run.info.run_id, run.info.status, run.data.tags, run.info.start_time)


def refuse_if_live(run, field: str = "resume", allowed: str | None = None) -> None:
    """A ConfigError naming the setting `field` while `run` lives in another process."""
    state, why = state_of(run)
    if state == "live":
        raise _still_running(run.info.run_id, why, field, allowed)


def claim(run, field: str = "resume", allowed: str | None = None) -> None:
    """Take the lock of `run` (an MLflow Run) to continue it, or refuse (`refuse_if_live`)."""
    refuse_if_live(run, field, allowed)
    if not hold(run.info.run_id):  # taken meanwhile
        raise _still_running(run.info.run_id, "its lock is held", field, allowed)


def _still_running(run_id: str, why: str, field: str, allowed: str | None) -> ConfigError:
    return ConfigError(
        field,
        f"run {run_id} is still running ({why})",
        allowed or "a run that ended (KILLED, FAILED), or a stale one: see tfdl runs",
    )


def frame_states(frame) -> list[tuple[str, str]]:
    """`liveness` of each run of a runs frame (tracking.runs_frame)."""

    def tags(row) -> dict:
        keys = (HOST, PID, HEARTBEAT)
        return {k: row.get(f"tags.{k}") for k in keys if isinstance(row.get(f"tags.{k}"), str)}

    out = []
    for _, row in frame.iterrows():
        start = row.get("start_time")
        start_ms = start.timestamp() * 1000 if hasattr(start, "timestamp") else None
        out.append(liveness(row["run_id"], row["status"], tags(row), start_ms))
    return out
