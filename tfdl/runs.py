"""`tfdl runs`: the runs of the store with their status and age, and which RUNNING ones
are stale (their process is gone, or silent too long); `--mark-stale` ends those KILLED.

Like `compare`, it never imports TensorFlow: it reads what MLflow holds.
"""

from __future__ import annotations

import time

import pandas as pd

from tfdl import tracking
from tfdl.compare import run_names
from tfdl.tracking import liveness

COLUMNS = ["run_id", "experiment", "run", "kind", "status", "age", "state", "owner"]


def runs_table(experiments: list[str] | None = None, status: str | None = None) -> pd.DataFrame:
    """One row per run, newest first: its id, experiment, name, kind, status, age since it
    started, and for a RUNNING run "live" or "stale" and why."""
    frame = tracking.runs_frame(experiments)
    if status:
        frame = frame[frame["status"] == status]
    frame = frame.sort_values("start_time", ascending=False).reset_index(drop=True)
    states = liveness.frame_states(frame)
    now = time.time()

    def column(name, default=""):
        return frame[name].fillna(default) if name in frame else pd.Series([default] * len(frame))

    starts = pd.to_datetime(frame["start_time"], utc=True)
    return pd.DataFrame(
        {
            "run_id": frame["run_id"],
            "experiment": frame["experiment"],
            "run": run_names(frame),
            "kind": column("tags.tfdl.kind", "training"),
            "status": frame["status"],
            "age": [_age(now - t.timestamp()) for t in starts],
            "state": [state for state, _ in states],
            "owner": [why for _, why in states],
        },
        columns=COLUMNS,
    )


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def mark_stale(table: pd.DataFrame) -> list[tuple[str, str, str]]:
    """End every stale run of `table` KILLED, the reason in its tags; (run id, kind, why)
    of each."""
    c = tracking.lifecycle.client()
    ended = []
    for _, row in table[table["state"] == "stale"].iterrows():
        c.set_tag(row["run_id"], liveness.STALE_REASON, row["owner"])
        c.set_tag(row["run_id"], "tfdl.error", f"stale: {row['owner']}; marked KILLED")
        c.set_terminated(row["run_id"], "KILLED")
        ended.append((row["run_id"], row["kind"], row["owner"]))
    return ended
