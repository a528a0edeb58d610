"""`tfdl compare`: the training runs of the store side by side, and their learning curves.

MLflow is queried in `tracking.py`; this module does the pandas work and the plot. It never
imports TensorFlow: comparing runs needs only the numbers MLflow holds.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from tfdl import tracking
from tfdl.errors import ConfigError

FORMATS = ("table", "csv", "markdown")
# Metrics where higher is better; everything else (losses, errors) is minimised.
MAXIMIZED = ("accuracy", "auc", "precision", "recall", "f1")
# Search parents summarise their trials and lr-find runs sweep the rate: neither is a training.
NOT_TRAINING = ("search", "lr_find")
FILTER_HINT = "MLflow search syntax, e.g. params.model.arch = 'cnn2d'"


def direction(metric: str) -> str:
    """ "max" for accuracy-like metrics (accuracy, auc, precision, recall, f1), else "min"."""
    return "max" if any(word in metric.lower() for word in MAXIMIZED) else "min"


def compare(
    experiments: list[str] | None = None,
    metric: str | None = None,
    filter_string: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(table, curves) of the training runs of `experiments` (all when None) that match
    `filter_string`.

    The table has one row per run, best first by `metric` (default `val_loss` if any run
    logged it, else `loss`): run, experiment (when several), the parameters that differ
    between the runs, final_<metric>, best_<metric> (min, or max for accuracy-like
    metrics), epochs, train_time_s (the epochs' wall time, when the runs logged
    epoch_time_s), duration_s, status, run_id. The curves are the metric per epoch in
    long form: run, run_id, epoch, value.
    """
    frame = tracking.runs_frame(experiments, filter_string)
    if "tags.tfdl.kind" in frame:
        frame = frame[~frame["tags.tfdl.kind"].isin(NOT_TRAINING)]
    if frame.empty:
        where = ", ".join(experiments) if experiments else "any experiment"
        if filter_string:
            raise ConfigError("filter", f"no training run in {where} matches {filter_string!r}")
        raise ConfigError("experiment", f"no training runs in {where}")
    frame = frame.reset_index(drop=True)
    metric = _pick_metric(frame, metric)

    histories = tracking.metric_histories(frame["run_id"], metric)
    # Epochs come from the loss, which every training logs per epoch, so they are right
    # also for a metric logged once (a test metric).
    losses = histories if metric == "loss" else tracking.metric_histories(frame["run_id"], "loss")
    names = run_names(frame)
    best = max if direction(metric) == "max" else min

    table = pd.DataFrame({"run": names})
    if frame["experiment"].nunique() > 1:
        table["experiment"] = frame["experiment"]
    for column in sorted(_differing_params(frame)):
        name = column.removeprefix("params.")
        table[name if name not in table else column] = frame[column].replace("None", None)
    values = [[v for _, v in histories[r]] for r in frame["run_id"]]
    table[f"final_{metric}"] = [v[-1] if v else math.nan for v in values]
    table[f"best_{metric}"] = [best(v) if v else math.nan for v in values]
    table["epochs"] = [max((s for s, _ in losses[r]), default=0) for r in frame["run_id"]]
    if frame.get("metrics.epoch_time_s", pd.Series(dtype=float)).notna().any():
        # Training time alone: a run's duration also counts its data, pictures and model.
        times = tracking.metric_histories(frame["run_id"], "epoch_time_s")
        table["train_time_s"] = [
            round(sum(v for _, v in times[r]), 1) if times[r] else math.nan for r in frame["run_id"]
        ]
    # A run still RUNNING (live, or left by a killed process) has no end yet: its age.
    start = pd.to_datetime(frame["start_time"], utc=True)
    end = pd.to_datetime(frame["end_time"], utc=True).fillna(pd.Timestamp.now(tz="UTC"))
    duration = (end - start).dt.total_seconds()
    table["duration_s"] = duration.round(1)
    # A RUNNING run whose process is gone will never end: say so (tfdl runs --mark-stale).
    states = tracking.liveness.frame_states(frame)
    table["status"] = [
        f"{st} (stale)" if live == "stale" else st
        for st, (live, _) in zip(frame["status"], states, strict=True)
    ]
    table["run_id"] = frame["run_id"]
    table = table.sort_values(
        [f"best_{metric}", f"final_{metric}"],
        ascending=direction(metric) == "min",
        na_position="last",
        kind="stable",
    ).reset_index(drop=True)

    label = dict(zip(frame["run_id"], names, strict=True))
    rows = [(label[r], r, step, value) for r in table["run_id"] for step, value in histories[r]]
    curves = pd.DataFrame(rows, columns=["run", "run_id", "epoch", "value"])
    return table, curves


def _pick_metric(frame: pd.DataFrame, metric: str | None) -> str:
    logged = sorted(
        c.removeprefix("metrics.")
        for c in frame.columns
        if c.startswith("metrics.") and frame[c].notna().any()
    )
    allowed = ", ".join(logged) or "none: the selected runs logged no metric"
    if metric is None:
        for default in ("val_loss", "loss"):
            if default in logged:
                return default
        raise ConfigError("metric", "the selected runs logged neither val_loss nor loss", allowed)
    if metric not in logged:
        raise ConfigError("metric", f"no selected run logged {metric!r}", allowed)
    return metric


def run_names(frame: pd.DataFrame) -> list[str]:
    """Run names, made unique with the run id's start where several runs share one."""
    raw = frame.get("tags.mlflow.runName", pd.Series([None] * len(frame)))
    names = [
        n if isinstance(n, str) and n else r[:8] for n, r in zip(raw, frame["run_id"], strict=True)
    ]
    counts = pd.Series(names).value_counts()
    return [
        f"{n} ({r[:8]})" if counts[n] > 1 else n
        for n, r in zip(names, frame["run_id"], strict=True)
    ]


def _differing_params(frame: pd.DataFrame) -> list[str]:
    """`params.*` columns whose value is not the same in every run; a parameter logged as
    None and one not logged (an older schema) both count as unset. Left out: `data_info.*`
    (facts about the data, not choices), the free-text `description`, `tracking.*` (where
    the run was recorded, shown as the experiment) and `train.verbose`."""
    return [
        c
        for c in frame.columns
        if c.startswith("params.")
        and not c.startswith(("params.data_info.", "params.tracking."))
        and c not in ("params.description", "params.train.verbose")
        and frame[c].replace("None", None).nunique(dropna=False) > 1
    ]


# ----------------------------------------------------------------------------- output


def render(table: pd.DataFrame, fmt: str = "table") -> str:
    """The table as text: aligned columns ("table"), CSV, or a Markdown table."""
    if fmt == "table":
        return table.to_string(index=False, float_format=_short)
    if fmt == "csv":
        return table.to_csv(index=False)  # full precision: it is for other programs
    if fmt == "markdown":
        return _markdown(table)
    raise ConfigError("format", f"unknown format {fmt!r}", ", ".join(FORMATS))


def _short(value: float) -> str:
    return f"{value:.4g}"


def _markdown(table: pd.DataFrame) -> str:
    # Written here rather than DataFrame.to_markdown, which needs the `tabulate` package.
    def cell(value) -> str:
        if isinstance(value, float):
            return "" if math.isnan(value) else _short(value)
        return "" if value is None or value is pd.NA else str(value).replace("|", "\\|")

    numeric = [pd.api.types.is_numeric_dtype(table[c]) for c in table.columns]
    lines = [
        "| " + " | ".join(cell(str(c)) for c in table.columns) + " |",
        "|" + "|".join("---:" if n else "---" for n in numeric) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(False)]
    return "\n".join(lines) + "\n"


def curves_plot(curves: pd.DataFrame, metric: str, path) -> Path:
    """The metric per epoch, one line per run (in the table's order), saved as a PNG."""
    # A Figure without pyplot: no global backend to set, nothing left open.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(8, 5), dpi=100)
    ax = fig.subplots()
    runs = list(dict.fromkeys(curves["run"]))
    # Markers show the epochs on short curves; on long ones they only clutter.
    marker = "o" if len(curves) and curves.groupby("run").size().max() <= 30 else None
    for run in runs:
        points = curves[curves["run"] == run]
        ax.plot(points["epoch"], points["value"], marker=marker, markersize=3, label=run)
    if not runs:
        ax.text(0.5, 0.5, f"no run logged {metric} per epoch", ha="center", transform=ax.transAxes)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel=metric, title=f"Learning curves: {metric} ({direction(metric)})")
    ax.grid(alpha=0.3)
    if 0 < len(runs) <= 20:  # past that a legend hides the curves
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
