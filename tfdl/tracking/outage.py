"""A tracking server that stops answering during a run.

Epochs go on training; their metrics wait and are retried, so none is lost. The user
sees one warning line when writes start failing and one when the server answers again.
After `tracking.outage_wait_s` without an answer the run fails, and what it could not
write (the epochs' metrics, the run's end) is kept in a file under the project's store,
`unsent/<run id>.jsonl`, which `tfdl runs --upload` sends once the server is back.

Only a server store has outages: a sqlite store's errors are errors.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from tfdl.errors import ConfigError
from tfdl.store import STORE, check_reachable, sqlite_path, tracking_uri

RETRY_S = 2.0  # between attempts while the server does not answer
_state = {"since": None, "gave_up": False, "patience": 300.0}
_lock = threading.Lock()


class TrackingOutage(RuntimeError):
    """The tracking server did not answer within the run's patience."""


def configure(patience_s: float) -> None:
    """How long a run waits for its tracking server (tracking.outage_wait_s)."""
    with _lock:
        _state.update(patience=float(patience_s), since=None, gave_up=False)


def unsent_file(run_id: str) -> Path:
    return STORE / "unsent" / f"{run_id}.jsonl"


def is_outage(err: BaseException) -> bool:
    """Whether `err` came from a tracking server that does not answer: a request left
    unanswered, or a server that does not answer now."""
    uri = tracking_uri()
    if sqlite_path(uri) is not None or isinstance(err, ConfigError):
        return False
    if _unanswered(err):  # asked now, a server back already would say no outage
        return True
    try:
        check_reachable()
    except ConfigError:
        return True
    return False


def _unanswered(err: BaseException | None) -> bool:
    """A connection refused or reset, a timeout, or retries used up: MLflow raises its
    own exception while handling the one from requests."""
    import requests

    unanswered = (
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        requests.exceptions.RetryError,
    )
    while err is not None:
        if isinstance(err, (_Away, *unanswered)):
            return True
        err = err.__cause__ or err.__context__
    return False


def keep(run_id: str, record: dict) -> Path:
    """Append `record` (a write the server did not take) to the run's unsent file."""
    path = unsent_file(run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
    return path


def _warn(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def patient(run_id: str, record: dict | None, write, *args, **kwargs):
    """`write(*args, **kwargs)`, retried while the tracking server does not answer, for
    up to the patience since it stopped; then `record` (what the write carries, if
    anything) is kept in the unsent file and TrackingOutage raised."""
    while True:
        if _state["gave_up"]:  # the run is failing: keep the rest without waiting
            _give_up(run_id, record)
        try:
            result = write(*args, **kwargs)
        except Exception as err:
            if not is_outage(err):
                raise
            with _lock:
                first = _state["since"] is None
                if first:
                    _state["since"] = time.monotonic()
                waited = time.monotonic() - _state["since"]
            if first:
                _warn(
                    f"warning: the tracking server at {tracking_uri()} does not answer; the "
                    f"epochs wait and are retried for up to {_state['patience']:.0f} s "
                    "(tracking.outage_wait_s)"
                )
            if waited > _state["patience"]:
                _state["gave_up"] = True
                _give_up(run_id, record)
            time.sleep(RETRY_S)
            continue
        with _lock:
            back, _state["since"] = _state["since"] is not None, None
        if back:
            _warn(f"the tracking server at {tracking_uri()} answers again: nothing was lost")
        return result


def _give_up(run_id: str, record: dict | None):
    """Keep what the write carries for tfdl runs --upload, and fail the run."""
    if record is not None:
        keep(run_id, record)
    raise TrackingOutage(gave_up_message(run_id)) from None


class _Away(Exception):
    """The tracking server does not answer its health check."""


def _health() -> None:
    try:
        check_reachable()
    except ConfigError as err:
        raise _Away(err.line()) from None


def answering(run_id: str) -> None:
    """Before a run reads back its epochs and writes its results: wait, as its
    epochs do, for a tracking server that stopped answering while it trained."""
    patient(run_id, None, _health)


def gave_up_message(run_id: str) -> str:
    return (
        f"the tracking server at {tracking_uri()} did not answer for "
        f"{_state['patience']:.0f} s; what run {run_id} could not write is kept in "
        f"{unsent_file(run_id)}: send it with tfdl runs --upload"
    )


def upload(client) -> list[tuple[str, int, str | None]]:
    """Send every unsent file's records: (run id, epochs sent, the run's end or None)."""
    from mlflow.entities import Metric, RunTag

    sent = []
    for path in sorted((STORE / "unsent").glob("*.jsonl")):
        run_id, epochs, ended = path.stem, set(), None
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["call"] == "log_batch":
                metrics = [Metric(**m) for m in record["metrics"]]
                tags = [RunTag(k, v) for k, v in record.get("tags", {}).items()]
                client.log_batch(run_id, metrics=metrics, tags=tags)
                epochs |= {m.step for m in metrics}  # a write may carry several epochs
            elif record["call"] == "end":
                if record.get("reason"):
                    client.set_tag(run_id, "tfdl.error", record["reason"])
                client.set_terminated(run_id, record["status"])
                ended = record["status"]
        path.unlink()
        sent.append((run_id, len(epochs), ended))
    return sent
