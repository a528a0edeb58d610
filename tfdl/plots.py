"""The lecture's pictures, drawn with matplotlib off screen and saved as PNG files.

Figures are made with `matplotlib.figure.Figure`, never pyplot: no global backend is set
or used, so drawing here leaves the caller's (a notebook's) matplotlib as it was, and
nothing stays open after a figure is saved.
"""

from pathlib import Path

from matplotlib.figure import Figure


def subplots(*grid, figsize, dpi, **kwargs):
    """(figure, axes) as pyplot.subplots makes them, without pyplot."""
    fig = Figure(figsize=figsize, dpi=dpi)
    return fig, fig.subplots(*grid, **kwargs)


def lr_find_plot(lrs, losses, smoothed, suggestion: float, path: Path) -> Path:
    """Loss against learning rate on a log axis, the suggested rate marked."""
    fig, ax = subplots(figsize=(7, 4.5), dpi=100)
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
    return path


def objective_plot(table, metric: str, direction: str, path: Path) -> Path:
    """The objective of each trial in the order they ran, and the best so far."""
    done = table.dropna(subset=["score"])
    fig, ax = subplots(figsize=(7, 4.5), dpi=100)
    ax.plot(range(1, len(done) + 1), done["score"], "o", label="trial")
    best = done["score"].cummin() if direction == "min" else done["score"].cummax()
    ax.step(range(1, len(done) + 1), best, where="post", label="best so far")
    ax.set(xlabel="trial", ylabel=metric, title=f"Search objective: {metric} ({direction})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return path


# ------------------------------------------------- the pictures of one run (tfdl.pictures)

SIZE, DPI = (6.4, 4.8), 100  # every run picture is 640 x 480 pixels
CLASS_COLOURS = ("tab:red", "tab:green", "tab:blue", "tab:orange", "tab:purple", "tab:brown")


def _grid(n: int, max_cols: int = 3):
    cols = min(n, max_cols)
    rows = -(-n // cols)
    fig, axes = subplots(rows, cols, figsize=SIZE, dpi=DPI, squeeze=False)
    for ax in axes.flat[n:]:  # unused cells of the last row
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _save(fig, path: Path) -> Path:
    # No bbox_inches="tight": it would change the pixel size from run to run.
    fig.savefig(path, dpi=DPI)
    return path


def learning_curves_plot(epochs, curves: dict, path: Path) -> Path:
    """One panel per quantity (loss, each metric): training and validation over epochs.

    `curves` maps a name to (training values, validation values or None).
    """
    fig, axes = _grid(len(curves))
    for ax, (name, (train, val)) in zip(axes, curves.items(), strict=True):
        ax.plot(epochs, train, marker=".", label="training")
        if val is not None:
            ax.plot(epochs, val, marker=".", label="validation")
        ax.set(title=name, xlabel="epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)  # no epoch 1.5
        ax.legend(fontsize="small")
    fig.tight_layout()
    return _save(fig, path)


def schedules_plot(epochs, schedules: dict, path: Path) -> Path:
    """The learning rate (log axis) and any other schedule (dropout rate) over epochs."""
    fig, axes = _grid(len(schedules), max_cols=1)
    for ax, (name, values) in zip(axes, schedules.items(), strict=True):
        ax.plot(epochs, values, marker=".")
        ax.set(title=name, xlabel="epoch", yscale="log" if name == "learning_rate" else "linear")
    fig.tight_layout()
    return _save(fig, path)


def confusion_matrix_plot(counts, class_names, path: Path) -> Path:
    """Counts of (true class, predicted class) pairs on the test split."""
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = subplots(figsize=SIZE, dpi=DPI)
    many = len(class_names) > 12  # numbers in every cell would be unreadable
    ConfusionMatrixDisplay(counts, display_labels=list(class_names)).plot(
        ax=ax, colorbar=False, include_values=not many, cmap="Blues"
    )
    ax.set_title(f"Confusion matrix, test split ({int(counts.sum())} samples)")
    fig.tight_layout()
    return _save(fig, path)


def decision_boundary_plot(xx, yy, zz, x, y, class_names, path: Path, probability: bool) -> Path:
    """The model's output over the input plane, the test points on top coloured by class.

    `zz` is p(class 1) for a binary model (`probability`), else the predicted class.
    """
    from matplotlib.colors import ListedColormap

    fig, ax = subplots(figsize=SIZE, dpi=DPI)
    n = max(len(class_names), 2)
    colours = [CLASS_COLOURS[i % len(CLASS_COLOURS)] for i in range(n)]
    if probability:
        mesh = ax.contourf(xx, yy, zz, levels=20, cmap="RdYlGn", vmin=0, vmax=1, alpha=0.6)
        ax.contour(xx, yy, zz, levels=[0.5], colors="k", linewidths=1)
        fig.colorbar(mesh, ax=ax, label=f"p({class_names[1] if class_names else 1})")
    else:
        ax.contourf(
            xx, yy, zz, levels=range(n + 1), cmap=ListedColormap(colours), alpha=0.3, vmin=0
        )
    for c in range(n):
        label = class_names[c] if c < len(class_names) else str(c)
        ax.scatter(
            *x[y == c].T, s=14, color=colours[c], edgecolors="k", linewidths=0.3, label=label
        )
    ax.set(title="Decision boundary and test points", xlabel="x1", ylabel="x2")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return _save(fig, path)


def filters_plot(panels, title: str, path: Path) -> Path:
    """One small image per filter of a convolution layer (its kernel, min-max scaled)."""
    fig, axes = _grid(len(panels), max_cols=8)
    for i, (ax, kernel) in enumerate(zip(axes, panels, strict=True)):
        lo, hi = float(kernel.min()), float(kernel.max())
        scaled = (kernel - lo) / (hi - lo) if hi > lo else kernel * 0 + 0.5
        ax.imshow(scaled, cmap=None if scaled.ndim == 3 else "gray", vmin=0, vmax=1)
        ax.set_title(str(i), fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.9, wspace=0.1, hspace=0.3)
    return _save(fig, path)


def attention_plot(scores, title: str, path: Path, rows=None) -> Path:
    """Attention weights, one panel per (example, head): row = query position, column = key.

    `scores` is (examples, heads, T_q, T_k); `rows` an optional text per example (its
    tokens), written beside the example's panels.
    """
    examples, heads = scores.shape[:2]
    fig, axes = subplots(examples, heads, figsize=SIZE, dpi=DPI, squeeze=False)
    for e in range(examples):
        for h in range(heads):
            ax = axes[e, h]
            ax.imshow(scores[e, h], cmap="viridis", vmin=0, vmax=1, aspect="auto")
            ax.set_title(f"example {e + 1}, head {h + 1}", fontsize=7)
            ax.tick_params(labelsize=5)
        if rows is not None:  # one text per row: per-token tick labels cost seconds to draw
            axes[e, 0].set_ylabel(rows[e][:40], fontsize=6)
    fig.suptitle(f"{title}\nrow = query position, column = key position", fontsize=9)
    # A fixed layout: tight_layout would draw the figure twice.
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.1, top=0.88, wspace=0.3, hspace=0.35)
    return _save(fig, path)


def gradient_norms_plot(epochs, norms: dict, path: Path) -> Path:
    """The gradient norm of each layer over epochs, log axis: vanishing or exploding."""
    fig, ax = subplots(figsize=SIZE, dpi=DPI)
    for name, values in norms.items():
        ax.plot(epochs, values, marker=".", label=name)
    ax.set(title="Gradient norm per layer", xlabel="epoch", ylabel="||dL/dW||", yscale="log")
    ax.legend(fontsize="x-small", ncol=2)
    fig.tight_layout()
    return _save(fig, path)
