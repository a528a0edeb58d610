"""The lecture's pictures, drawn with matplotlib off screen and saved as PNG files."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402


def lr_find_plot(lrs, losses, smoothed, suggestion: float, path: Path) -> Path:
    """Loss against learning rate on a log axis, the suggested rate marked."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    ax.plot(lrs, losses, alpha=0.35, label="loss per step")
    ax.plot(lrs, smoothed, label="smoothed")
    ax.axvline(suggestion, color="tab:red", linestyle="--", label=f"suggested {suggestion:.2g}")
    ax.set(
        xscale="log", xlabel="learning rate", ylabel="training loss", title="Learning-rate sweep"
    )
    finite = [v for v in [*losses, *smoothed] if v == v and abs(v) != float("inf")]
    if finite:  # keep the divergence at the end from flattening the interesting part
        ax.set_ylim(min(finite) * 0.9, max(smoothed[0] * 1.5, min(finite) * 1.1))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def objective_plot(table, metric: str, direction: str, path: Path) -> Path:
    """The objective of each trial in the order they ran, and the best so far."""
    done = table.dropna(subset=["score"])
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    ax.plot(range(1, len(done) + 1), done["score"], "o", label="trial")
    best = done["score"].cummin() if direction == "min" else done["score"].cummax()
    ax.step(range(1, len(done) + 1), best, where="post", label="best so far")
    ax.set(xlabel="trial", ylabel=metric, title=f"Search objective: {metric} ({direction})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
