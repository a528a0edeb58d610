"""The lecture's pictures of one finished run, written into a folder the run logs.

`run_pictures` draws what applies to the run: learning curves and schedules from the
per-epoch history; for classifiers the test confusion matrix, and for 2-D inputs the
decision boundary; the first convolution layer's filters; every attention layer's per-head
weights for two test inputs; a generated sample for language models; gradient norms per
layer. Each picture is 640 x 480 pixels. A picture that fails to draw is skipped with a
`PictureWarning`: a drawing problem must not cost a finished training run. A picture that
cannot be written (a full disk, a folder gone) is an OSError like any other write: the
run fails with it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from tfdl import plots
from tfdl.data.spec import take

# Per-epoch columns that are no training/validation curve of their own.
SCHEDULES = ("learning_rate", "dropout_rate")
NOT_CURVES = ("epoch", "lr", "epoch_time_s", *SCHEDULES)
NOT_CURVE_PREFIXES = ("val_", "gap_", "grad_norm/", "distinct_units/")
MAX_FILTERS = 32
ATTENTION_EXAMPLES = 2
MAX_HEADS = 8
GRID = 100  # decision boundary: GRID x GRID points


class PictureWarning(UserWarning):
    """A picture could not be drawn; the run goes on without it."""


def run_pictures(model, cfg, splits, history, out_dir: Path, *, seed: int = 0) -> list[Path]:
    """Draw the pictures that apply to this run into `out_dir`; return the files written.

    `history` is the run's per-epoch table (an `epoch` column and one column per logged
    metric, as in history.csv); `cfg` the resolved pipeline (unused for now: the model and
    the data spec say what applies).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = splits.spec
    jobs = [
        ("learning curves", lambda: learning_curves(history, out_dir)),
        ("schedules", lambda: schedules(history, out_dir)),
        ("gradient norms", lambda: gradient_norms(history, out_dir)),
        ("first-layer filters", lambda: first_layer_filters(model, out_dir)),
        ("attention", lambda: attention_pictures(model, splits, out_dir)),
    ]
    if spec.task in ("binary", "multiclass"):
        jobs.append(("confusion matrix", lambda: confusion_matrix(model, splits, out_dir)))
        if tuple(spec.input_shape) == (2,) and not spec.table and not spec.stream:
            jobs.append(("decision boundary", lambda: decision_boundary(model, splits, out_dir)))
    if spec.task == "language_model":
        jobs.append(("sample", lambda: language_sample(model, spec, out_dir, seed)))
    written: list[Path] = []
    for name, job in jobs:
        try:
            written += job()
        except OSError:
            raise
        except Exception as err:  # noqa: BLE001 -- see the module docstring
            warnings.warn(f"picture {name!r} skipped: {err}", PictureWarning, stacklevel=2)
    return written


# ---------------------------------------------------------------------------- from history


def learning_curves(history, out_dir: Path) -> list[Path]:
    """learning_curves.png: loss and each metric, training vs validation."""
    if history is None or not len(history):
        return []
    names = [
        c for c in history.columns if c not in NOT_CURVES and not c.startswith(NOT_CURVE_PREFIXES)
    ]
    curves = {
        n: (history[n].to_numpy(float), _column(history, f"val_{n}")) for n in names
    }  # loss first: Keras logs it first, and history.csv keeps that order
    if not curves:
        return []
    return [plots.learning_curves_plot(_epochs(history), curves, out_dir / "learning_curves.png")]


def schedules(history, out_dir: Path) -> list[Path]:
    """schedules.png: the learning rate and, if logged, the dropout rate over epochs."""
    if history is None or not len(history):
        return []
    found = {n: history[n].to_numpy(float) for n in SCHEDULES if n in history}
    if not found:
        return []
    return [plots.schedules_plot(_epochs(history), found, out_dir / "schedules.png")]


def gradient_norms(history, out_dir: Path) -> list[Path]:
    """gradient_norms.png: one line per layer (the `grad_norm/<layer>` columns)."""
    if history is None or not len(history):
        return []
    prefix = "grad_norm/"
    norms = {c[len(prefix) :]: history[c].to_numpy(float) for c in history if c.startswith(prefix)}
    if not norms:
        return []
    return [plots.gradient_norms_plot(_epochs(history), norms, out_dir / "gradient_norms.png")]


def _epochs(history):
    return history["epoch"].to_numpy() if "epoch" in history else np.arange(1, len(history) + 1)


def _column(history, name):
    return history[name].to_numpy(float) if name in history else None


# ------------------------------------------------------------------------------ classifiers


def predicted_classes(model, x, task: str, spec=None) -> np.ndarray:
    """Class ids: p > 0.5 for a binary (sigmoid) output, argmax of a softmax otherwise.
    `spec`: the data spec of streamed rows (files read a chunk at a time)."""
    p = _predict(model, x, spec)
    if task == "binary":
        return (p.reshape(len(p), -1)[:, 0] > 0.5).astype(int)
    return p.argmax(axis=-1).astype(int)


def _labels(y) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot targets
        return y.argmax(axis=1).astype(int)
    return y.reshape(len(y)).astype(int)


def _class_names(spec) -> list[str]:
    n = 2 if spec.task == "binary" else int(spec.num_classes)
    names = list(spec.class_names)
    return names if len(names) == n else [str(i) for i in range(n)]


def confusion_counts(model, splits) -> np.ndarray:
    """(classes, classes) counts on the test split: row = true class, column = predicted."""
    from sklearn.metrics import confusion_matrix as sk_confusion

    names = _class_names(splits.spec)
    predicted = predicted_classes(model, splits.x_test, splits.spec.task, splits.spec)
    return sk_confusion(_labels(splits.y_test), predicted, labels=range(len(names)))


def confusion_matrix(model, splits, out_dir: Path) -> list[Path]:
    """confusion_matrix.png and confusion_matrix.csv (the counts, class names on both axes)."""
    import pandas as pd

    names = _class_names(splits.spec)
    counts = confusion_counts(model, splits)
    table = out_dir / "confusion_matrix.csv"
    frame = pd.DataFrame(counts, index=names, columns=names)
    frame.index.name = "true \\ predicted"
    frame.to_csv(table)
    return [plots.confusion_matrix_plot(counts, names, out_dir / "confusion_matrix.png"), table]


def decision_boundary(model, splits, out_dir: Path) -> list[Path]:
    """decision_boundary.png: the model's output on a grid over the data, test points on top."""
    points = np.concatenate([splits.x_train, splits.x_val, splits.x_test]).astype("float32")
    lo, hi = points.min(axis=0), points.max(axis=0)
    margin = 0.1 * (hi - lo) + 1e-6
    xs = np.linspace(lo[0] - margin[0], hi[0] + margin[0], GRID)
    ys = np.linspace(lo[1] - margin[1], hi[1] + margin[1], GRID)
    xx, yy = np.meshgrid(xs, ys)
    grid = np.stack([xx.ravel(), yy.ravel()], axis=1).astype("float32")
    binary = splits.spec.task == "binary"
    out = _predict(model, grid)
    zz = out.reshape(len(grid), -1)[:, 0] if binary else out.argmax(axis=-1)
    path = out_dir / "decision_boundary.png"
    names = _class_names(splits.spec)
    x, y = np.asarray(splits.x_test), _labels(splits.y_test)
    plots.decision_boundary_plot(xx, yy, zz.reshape(xx.shape), x, y, names, path, binary)
    return [path]


def _predict(model, x, spec=None, chunk: int = 1024) -> np.ndarray:
    """The model's outputs, called directly in chunks: for a one-off pass this is faster
    than `predict` or `predict_on_batch`, which first trace a graph. Rows of a streamed
    source (`spec.stream`) are read from their files as tf.data streams them."""
    if spec is not None and spec.stream:
        from tfdl.data.pipeline import predict_rows

        return predict_rows(model, spec, x)
    n = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
    parts = [
        np.asarray(model(take(x, slice(i, i + chunk)), training=False)) for i in range(0, n, chunk)
    ]
    return np.concatenate(parts)


# ------------------------------------------------------------------------------- CNN filters


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):  # a nested model, e.g. an augmentation block
            yield from _all_layers(layer)


def first_conv_kernels(model) -> tuple[str, list[np.ndarray]] | None:
    """The first Conv1D/Conv2D layer's name and one image per filter (at most 32).

    Conv2D kernels (kh, kw, c_in, filters) give a kh x kw image per filter (RGB for 3
    input channels, else the mean over channels); Conv1D kernels (k, c_in, filters) a
    c_in x k image (one row per input channel).
    """
    import keras

    for layer in _all_layers(model):
        if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D)):
            kernel = np.asarray(layer.kernel)
            panels = []
            for f in range(min(kernel.shape[-1], MAX_FILTERS)):
                k = kernel[..., f]
                if k.ndim == 3:
                    panels.append(k if k.shape[-1] == 3 else k.mean(axis=-1))
                else:
                    panels.append(k.T)
            return layer.name, panels
    return None


def first_layer_filters(model, out_dir: Path) -> list[Path]:
    """first_layer_filters.png, and .csv: one row per panel (filter), its weights flattened."""
    import pandas as pd

    found = first_conv_kernels(model)
    if found is None:
        return []
    name, panels = found
    title = f"First convolution layer {name!r}: {len(panels)} filters"
    path = plots.filters_plot(panels, title, out_dir / "first_layer_filters.png")
    table = out_dir / "first_layer_filters.csv"
    frame = pd.DataFrame([p.ravel() for p in panels])
    frame.columns = [f"w{i}" for i in frame.columns]
    frame.index.name = "filter"
    frame.to_csv(table)
    return [path, table]


# -------------------------------------------------------------------------------- attention


def attention_layers(model) -> list:
    """Every multi-head attention layer of the model (Keras's or the scratch one)."""
    import keras

    from tfdl.layers import MultiHeadAttentionScratch

    kinds = (keras.layers.MultiHeadAttention, MultiHeadAttentionScratch)
    return [la for la in _all_layers(model) if isinstance(la, kinds)]


def attention_scores(model, x) -> dict[str, np.ndarray]:
    """Per-head attention weights of every attention layer for inputs `x`.

    Returns layer name -> (batch, heads, T_q, T_k). One sub-model computes every tensor
    the attention layers were called with in the model's graph (query, value, masks);
    each layer is then called again on those values, with the same keyword arguments
    (causal mask, padding mask) and `return_attention_scores=True`.
    """
    import keras

    layers = [la for la in attention_layers(model) if la._inbound_nodes]
    if not layers:
        return {}
    nodes = [la._inbound_nodes[0] for la in layers]
    tensors = {id(t): t for node in nodes for t in node.arguments.keras_tensors}
    probe = keras.Model(model.input, list(tensors.values()))
    outputs = probe(x, training=False)  # eager: faster than tracing a graph for one call
    if not isinstance(outputs, (list, tuple)):  # Keras unwraps a one-output list
        outputs = [outputs]
    values = dict(zip(tensors, outputs, strict=True))
    scores = {}
    for layer, node in zip(layers, nodes, strict=True):
        args, kwargs = node.arguments.fill_in(values)
        kwargs = {**kwargs, "return_attention_scores": True, "training": False}
        _, weights = layer(*args, **kwargs)
        scores[layer.name] = np.asarray(weights)
    return scores


def attention_pictures(model, splits, out_dir: Path) -> list[Path]:
    """attention_<layer>.png for every attention layer, and attention_scores.npz (the data)."""
    if not attention_layers(model):
        return []
    x = take(splits.x_test, slice(0, ATTENTION_EXAMPLES))
    scores = attention_scores(model, x)
    vocabulary = list(splits.spec.vocabulary)
    written = []
    for name, weights in scores.items():
        weights = weights[:, :MAX_HEADS]
        title = f"{name}: attention weights of {weights.shape[1]} heads"
        path = out_dir / f"attention_{name}.png"
        rows = _query_text(name, x, vocabulary)
        written.append(plots.attention_plot(weights, title, path, rows))
    data = out_dir / "attention_scores.npz"
    np.savez_compressed(data, **scores)
    return [*written, data]


def _query_text(layer: str, x, vocabulary) -> list[str] | None:
    """Each example's query sequence as text, when the inputs are token ids."""
    if not vocabulary:
        return None
    if isinstance(x, dict):  # encoder layers read the source, decoder layers the target
        x = x["encoder_inputs" if layer.startswith("encoder") else "decoder_inputs"]
    return ["".join(vocabulary[int(i)] for i in row) for row in np.asarray(x)]


# ---------------------------------------------------------------------------- language model


def language_sample(model, spec, out_dir: Path, seed: int) -> list[Path]:
    """sample.txt: 200 characters the model writes from scratch (temperature 0.8)."""
    from tfdl.models.language import generate_text

    text = generate_text(model, spec, prompt="", length=200, temperature=0.8, seed=seed)
    path = out_dir / "sample.txt"
    path.write_text(text, encoding="utf-8")
    return [path]
