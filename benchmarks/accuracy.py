"""`make bench-accuracy`: every shipped pipeline trained as shipped, beside baselines fitted
on the same training split and scored on the same test split; the course's accuracy goals;
and the time to reach the digits goals with tfdl against a plain Keras script.

    python -m benchmarks.accuracy [pipeline ...] [race]   # a subset: measured again, merged
    python -m benchmarks.accuracy --readme                # results/*.md and the README again

Writes results/accuracy.json and .md, and the README's accuracy table between its markers,
after every measurement: a run cut short keeps what it measured, each part stamped with its
date and commit, as a subset run merges into the earlier results. Each pipeline runs in a
fresh process with an MLflow store of its own in a temporary folder, so the project's
mlruns/ is never touched. A pipeline whose data Keras downloads is skipped, with the
reason, when the data is not in Keras's cache (KERAS_HOME, else ~/.keras) and the network
is out of reach. A pipeline whose data is example data a command writes
(shapes_folder) gets it written afresh into the process's temporary working folder, where
its relative `data.path` points: the pipeline file is never overridden.

Baselines, from the prepared pipeline's own splits:
- classification: the majority class of the training split; scikit-learn's logistic
  regression on the standardised, flattened inputs (texts: on TF-IDF word counts);
  on MNIST-1D also pipelines/mlp.yaml's deep_mlp trained on the very same split;
- regression: the training mean; ridge regression (mean absolute errors);
- language models: the most frequent character (accuracy), the uniform loss ln(vocabulary)
  and the training split's character frequencies (unigram loss);
- seq2seq: the most frequent character at each target position.

Time to goal: `benchmarks.tfdl_digits` (tfdl's API) and `benchmarks.plain_digits` (plain
Keras), fresh processes alternated pair by pair, each from the moment it is started to the
end of the first epoch whose test accuracy reaches the goal (both stop there); tfdl's runs
share one MLflow store, as a user's runs do.
"""

import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.run import commit, machine

PROJECT = Path(__file__).resolve().parent.parent
PIPELINES = PROJECT / "pipelines"
RESULTS = Path(__file__).resolve().parent / "results"
README = PROJECT / "README.md"
BEGIN = "<!-- accuracy: python -m benchmarks.accuracy writes this block; do not edit by hand -->"
END = "<!-- accuracy: end -->"
RACE = "race"
PAIRS = 3  # fresh tfdl and plain processes per race, alternated
# The digits goals: pipeline -> (its model in plain_digits / tfdl_digits, test accuracy)
DIGITS_GOALS = {"mlp": ("mlp", 0.97), "cnn2d": ("cnn", 0.985)}
MNIST1D_BEST = 0.95
SEQ2SEQ_EXACT = 0.95


def shipped() -> list[str]:
    """Every shipped pipeline by its path under pipelines/ without .yaml, the lecture
    demonstrations (lectures/...) included."""
    return sorted(str(p.relative_to(PIPELINES).with_suffix("")) for p in PIPELINES.rglob("*.yaml"))


# ------------------------------------------------------------------------------ baselines


def _flat(x) -> np.ndarray:
    """One row of numbers per sample; float32 halves what scikit-learn holds of an image set."""
    x = np.asarray(x)
    return x.reshape(len(x), -1).astype(np.float32, copy=False)


def majority(y_train, y_test) -> float:
    """Accuracy of always answering the training split's most frequent class."""
    from sklearn.dummy import DummyClassifier

    y_train, y_test = np.ravel(y_train), np.ravel(y_test)
    dummy = DummyClassifier(strategy="most_frequent").fit(np.zeros((len(y_train), 1)), y_train)
    return float(dummy.score(np.zeros((len(y_test), 1)), y_test))


def logistic(x_train, y_train, x_test, y_test) -> float:
    """Test accuracy of a logistic regression on the standardised, flattened inputs."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return float(model.fit(_flat(x_train), y_train).score(_flat(x_test), y_test))


def text_logistic(x_train, y_train, x_test, y_test, max_tokens=None) -> float:
    """Test accuracy of a logistic regression on TF-IDF weighted word counts."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(
        TfidfVectorizer(max_features=max_tokens), LogisticRegression(max_iter=2000)
    )
    return float(model.fit(list(x_train), y_train).score(list(x_test), y_test))


def regression(x_train, y_train, x_test, y_test) -> dict:
    """Mean absolute test errors of the training mean and of a ridge regression."""
    from sklearn.dummy import DummyRegressor
    from sklearn.linear_model import Ridge
    from sklearn.metrics import mean_absolute_error
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, x_test = _flat(x_train), _flat(x_test)
    mean = DummyRegressor().fit(x_train, y_train).predict(x_test)
    ridge = make_pipeline(StandardScaler(), Ridge()).fit(x_train, y_train).predict(x_test)
    return {
        "mean_mae": float(mean_absolute_error(y_test, mean)),
        "ridge_mae": float(mean_absolute_error(y_test, ridge)),
    }


def uniform_loss(vocabulary_size: int) -> float:
    """Cross-entropy of guessing every token with the same probability: ln(vocabulary)."""
    return math.log(vocabulary_size)


def unigram_loss(y_train, y_test, vocabulary_size: int) -> float:
    """Cross-entropy on `y_test` of the training tokens' frequencies (add-one smoothed, so
    a token unseen in training costs a finite loss)."""
    counts = np.bincount(np.ravel(y_train), minlength=vocabulary_size) + 1.0
    return float(-np.mean(np.log(counts / counts.sum())[np.ravel(y_test)]))


def position_majority(y_train, y_test) -> dict:
    """The most frequent training token at each target position, as one answer for every
    test sample: its per-token accuracy and the share of targets it matches exactly."""
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    mode = np.array([np.bincount(column).argmax() for column in y_train.T])
    hits = y_test == mode
    return {"per_token": float(hits.mean()), "exact": float(hits.all(axis=1).mean())}


def baselines(p) -> dict:
    """The baselines of a prepared pipeline's task, on its own training and test splits
    (a string: why one does not apply)."""
    from tfdl.data.pipeline import inputs_of

    s, spec = p.splits, p.spec
    if spec.task == "language_model":
        size = spec.num_classes
        return {
            "majority": majority(s.y_train, s.y_test),
            "uniform_loss": uniform_loss(size),
            "unigram_loss": unigram_loss(s.y_train, s.y_test, size),
        }
    if spec.task == "seq2seq":
        return {"majority": position_majority(s.y_train, s.y_test)}
    if spec.task == "regression":
        return regression(s.x_train, s.y_train, s.x_test, s.y_test)
    out = {"majority": majority(s.y_train, s.y_test)}
    if spec.table:
        out["logistic"] = "n/a: a table with category or text columns"
    elif spec.text:
        out["logistic"] = text_logistic(
            s.x_train, s.y_train, s.x_test, s.y_test, spec.text["max_tokens"]
        )
    else:  # a streamed source's splits name files: read them as the model would
        x_train, x_test = inputs_of(spec, s.x_train), inputs_of(spec, s.x_test)
        out["logistic"] = logistic(x_train, s.y_train, x_test, s.y_test)
    return out


def fingerprint(splits) -> str:
    """A hash of the split's inputs and labels, as a run's dataset digest is made: equal
    only for the same split."""
    from tfdl.tracking.records import content_digest

    return content_digest(splits.x_train, splits.y_train, splits.x_test, splits.y_test)


def clearly_above(a: float, b: float, n: int) -> bool:
    """Accuracy `a` above `b` by more than twice the standard error of their difference on
    `n` test samples each: beyond what the split's size alone would explain."""
    se = math.sqrt((a * (1 - a) + b * (1 - b)) / n)
    return a - b > 2 * se


# --------------------------------------------------------------- measurements, in a child


def _raw(name: str) -> dict:
    from tfdl.config import read_yaml

    return read_yaml(PIPELINES / f"{name}.yaml")


def _prepare(name: str, work: Path):
    """The prepared pipeline `name` as shipped, its example data written into `work` first
    (then the working folder) when its source has an example-data command."""
    import tfdl
    from tfdl.cli import main as tfdl_cli
    from tfdl.data.schema import SOURCES

    data = _raw(name)["data"]
    example = SOURCES[data["source"]].example
    if example and not Path(data["path"]).is_absolute():
        work.mkdir(exist_ok=True)
        os.chdir(work)
        tfdl_cli(shlex.split(example.format(path=data["path"]))[1:])
    return tfdl.prepare(PIPELINES / f"{name}.yaml")


def measure(name: str, work: Path) -> dict:
    """One shipped pipeline trained as shipped, and its baselines (run in a child)."""
    import tfdl
    from tfdl.data.schema import SOURCES
    from tfdl.errors import ConfigError
    from tfdl.training import evaluate

    entry = _names(name)
    start = time.perf_counter()
    try:
        p = _prepare(name, work)
    except ConfigError as err:
        if SOURCES[entry["dataset"]].downloads and err.field == "data.path":
            # tfdl's message names this machine's cache folder; the results say it generally
            reason = "not in Keras's cache (KERAS_HOME, else ~/.keras) and no network"
            return entry | {"skipped": f"needs the {entry['dataset']} download: {reason}"}
        raise
    entry["data_s"] = time.perf_counter() - start
    entry["baselines"] = baselines(p)
    start = time.perf_counter()
    result = tfdl.train(p)
    entry["train_s"] = time.perf_counter() - start
    model = result.model
    entry |= {
        "task": p.spec.task,
        "parameters": int(sum(math.prod(w.shape) for w in model.trainable_weights)),
        "epochs": len(result.history["loss"]),
        "max_epochs": p.cfg.train.epochs,
        "test": result.test_metrics,
        "n_train": len(p.splits.y_train),
        "n_test": len(p.splits.y_test),
        "split": fingerprint(p.splits),
    }
    if p.spec.task == "language_model":  # its goal is on the validation loss
        entry["val"] = evaluate(model, p, "val")
    return entry


def reference(name: str) -> dict:
    """pipelines/mlp.yaml's deep_mlp, trained on the very split of pipeline `name` (run in
    a child): the dense net a sequence model of the same data should beat."""
    import tfdl
    from tfdl.prepared import prepare

    raw = _raw("mlp") | {"data": _raw(name)["data"]}
    p = tfdl.prepare(PIPELINES / f"{name}.yaml")
    start = time.perf_counter()
    result = tfdl.train(prepare(tfdl.load_pipeline(raw), splits=p.splits))
    return {
        "pipeline": f"mlp.yaml on the data of {name}.yaml",
        "accuracy": result.test_metrics["accuracy"],
        "epochs": len(result.history["loss"]),
        "train_s": time.perf_counter() - start,
        "split": fingerprint(p.splits),
    }


def isolated(module: str, *args: str, store: str | None = None) -> tuple[dict, float]:
    """`python -m module *args --out FILE` in a fresh process with a temporary folder of its
    own (its MLflow store unless `store` names one, FILE, a working folder); the JSON it
    wrote and when it started (time.time())."""
    with tempfile.TemporaryDirectory(prefix="tfdl-accuracy-") as tmp:
        out = Path(tmp) / "result.json"
        uri = store or f"sqlite:///{tmp}/mlflow.db"
        env = os.environ | {"MLFLOW_TRACKING_URI": uri}
        cmd = [sys.executable, "-m", module, *args, "--out", str(out)]
        start = time.time()
        proc = subprocess.run(cmd, cwd=PROJECT, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[2:-2])}: {proc.stderr[-3000:]}")
        return json.loads(out.read_text()), start


def child(kind: str, name: str, flag: str, out: str) -> None:
    """`--child pipeline|reference NAME --out FILE`: one measurement, its JSON into FILE."""
    work = Path(out).parent / "work"
    result = measure(name, work) if kind == "pipeline" else reference(name)
    Path(out).write_text(json.dumps(result))


# -------------------------------------------------------------------- the time to the goals


def time_to_goal(side: str, model: str, goal: float, store: str) -> dict:
    """One fresh process of `side` ("tfdl" or "plain"): seconds from its start to the end
    of the first epoch whose test accuracy reaches `goal` (None: never reached)."""
    module = {"tfdl": "benchmarks.tfdl_digits", "plain": "benchmarks.plain_digits"}[side]
    r, start = isolated(module, model, "--goal", str(goal), store=store)
    reached = next((i for i, e in enumerate(r["epochs"]) if e[2] >= goal), None)
    return {
        "goal_s": None if reached is None else r["epochs"][reached][0] - start,
        "goal_epoch": None if reached is None else reached + 1,
        "first_epoch_s": r["epochs"][0][0] - start,
        "epochs": len(r["epochs"]),
        "best_test_accuracy": max(e[2] for e in r["epochs"]),
    }


def race(pairs: int = PAIRS) -> dict:
    """The time to each digits goal, tfdl against plain Keras. tfdl's runs share one store,
    as a user's runs do: a new sqlite store creates its tables once, about a second. One
    untimed run of each side first fills that store and the file cache alike."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="tfdl-accuracy-") as tmp:
        store = f"sqlite:///{tmp}/mlflow.db"
        for pipeline, (model, goal) in DIGITS_GOALS.items():
            for side in ("tfdl", "plain"):
                time_to_goal(side, model, goal, store)
            out[pipeline] = _race(pipeline, model, goal, store, pairs)
    return out


def _race(pipeline: str, model: str, goal: float, store: str, pairs: int) -> dict:
    runs = {"tfdl": [], "plain": []}
    for i in range(pairs):  # alternated, so neither always runs on a warmer machine
        for side in ("tfdl", "plain") if i % 2 == 0 else ("plain", "tfdl"):
            runs[side].append(time_to_goal(side, model, goal, store))
            print(f"  {pipeline} {side}: {_seconds(runs[side][-1]['goal_s'])}", flush=True)
    both = [(t["goal_s"], q["goal_s"]) for t, q in zip(runs["tfdl"], runs["plain"], strict=True)]
    both = [(t, q) for t, q in both if t is not None and q is not None]
    return {
        "goal": goal,
        "runs": runs,
        **{
            f"{side}_s": _median([r["goal_s"] for r in rs if r["goal_s"] is not None])
            for side, rs in runs.items()
        },
        "tfdl/plain": _median([t / q for t, q in both]),
    }


def _median(values):
    return statistics.median(values) if values else None


def _seconds(s) -> str:
    return "not reached" if s is None else f"{s:.1f} s"


# ------------------------------------------------------------------------------ the goals


def goals(r: dict) -> list[dict]:
    """Each goal: what it asks, the measured figures, and met (True/False; None: not
    measured, or not all of what it covers)."""
    pipelines = r.get("pipelines", {})

    def measured(name):
        e = pipelines.get(name)
        return e if e and "test" in e else None

    out = []
    for name, label in (("cnn2d", "digits CNN"), ("mlp", "digits MLP")):
        goal, e = DIGITS_GOALS[name][1], measured(name)
        text = f"{label} (`{name}`) test accuracy >= {goal:.1%}"
        out.append(_goal(text, e and (e["test"]["accuracy"], f"{e['test']['accuracy']:.4f}"), goal))
    e = measured("transformer_seq2seq")
    text = f"seq2seq dates (`transformer_seq2seq`) exact match >= {SEQ2SEQ_EXACT:.0%}"
    em = e and e["test"]["exact_match"]
    out.append(_goal(text, e and (em, f"{em:.4f}"), SEQ2SEQ_EXACT))

    # MNIST-1D: every shipped sequence model of it, against deep_mlp on its own split
    names = sorted(
        n
        for n, w in r.get("shipped", {}).items()
        if w["dataset"] == "mnist1d" and w["architecture"] != "deep_mlp"
    )
    seq = {n: e for n in names if (e := measured(n)) and "deep_mlp" in e["baselines"]}
    missing = [n for n in names if n not in seq]
    text = "MNIST-1D: every sequence architecture clearly above `deep_mlp` on the same split"
    figures = ", ".join(
        f"{n} {e['test']['accuracy']:.3f}"
        + ("" if clearly_above(*_pair(e), e["n_test"]) else " (not clearly)")
        for n, e in seq.items()
    )
    if seq:
        refs = sorted({f"{e['baselines']['deep_mlp']:.3f}" for e in seq.values()})
        figures += f"; deep_mlp {' / '.join(refs)}"
    below = [n for n, e in seq.items() if not clearly_above(*_pair(e), e["n_test"])]
    met = False if below else (None if missing or not seq else True)
    out.append({"goal": text, "value": _with_missing(figures, missing), "met": met})
    best = max(seq, key=lambda n: seq[n]["test"]["accuracy"], default=None)
    top = best and seq[best]["test"]["accuracy"]
    met = (
        None
        if best is None
        else (True if top >= MNIST1D_BEST else (False if not missing else None))
    )
    text = f"MNIST-1D: the best of them >= {MNIST1D_BEST:.0%}"
    value = f"{best} {top:.4f}" if best else ""
    out.append({"goal": text, "value": _with_missing(value, missing), "met": met})

    e = measured("char_lm")
    text = "char LM (`char_lm`) validation loss < ln(vocabulary) / 2"
    if e:
        uniform = e["baselines"]["uniform_loss"]
        vocabulary = round(math.exp(uniform))
        value = f"{e['val']['loss']:.3f}; ln({vocabulary}) / 2 = {uniform / 2:.3f}"
        out.append({"goal": text, "value": value, "met": e["val"]["loss"] < uniform / 2})
    else:
        out.append({"goal": text, "value": "", "met": None})
    return out


def _pair(e) -> tuple[float, float]:
    return e["test"]["accuracy"], e["baselines"]["deep_mlp"]


def _with_missing(value: str, missing: list[str]) -> str:
    return "; ".join(filter(None, [value, missing and f"not measured: {', '.join(missing)}"]))


def _goal(text: str, measured, goal) -> dict:
    """A goal on one figure: `measured` is (value, as shown) or None."""
    if not measured:
        return {"goal": text, "value": "", "met": None}
    return {"goal": text, "value": measured[1], "met": measured[0] >= goal}


# ------------------------------------------------------------------------------- rendering


def _cell(value, digits=3) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return f"{value:.{digits}f}"


def _result(e: dict) -> str:
    t = e["test"]
    match e["task"]:
        case "language_model":
            return (
                f"loss {t['loss']:.3f} (val {e['val']['loss']:.3f}), "
                f"next-character accuracy {t['accuracy']:.3f}"
            )
        case "seq2seq":
            return f"exact match {t['exact_match']:.3f}, per character {t['accuracy']:.3f}"
        case "regression":
            return f"MAE {t['mae']:.3f}"
    return f"accuracy {t['accuracy']:.3f}"


def _baseline_cells(e: dict) -> tuple[str, str, str]:
    """majority, logistic / linear, other"""
    b = e["baselines"]
    match e["task"]:
        case "language_model":
            other = f"uniform loss {b['uniform_loss']:.3f}, unigram loss {b['unigram_loss']:.3f}"
            return _cell(b["majority"]), "n/a: next character (see unigram)", other
        case "seq2seq":
            m = b["majority"]
            majority_ = f"per character {m['per_token']:.3f}, exact {m['exact']:.3f}"
            return majority_, "n/a: the answer is a sequence", ""
        case "regression":
            return f"MAE {b['mean_mae']:.3f} (mean)", f"MAE {b['ridge_mae']:.3f} (ridge)", ""
    other = f"deep_mlp {b['deep_mlp']:.3f}" if "deep_mlp" in b else ""
    return _cell(b["majority"]), _cell(b["logistic"]), other


def table(r: dict) -> list[str]:
    lines = [
        "| pipeline | architecture | data | parameters | epochs | train s | test result "
        "| majority | logistic / linear | other baseline |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    entries = r.get("pipelines", {})
    for name in sorted(set(r.get("shipped", ())) | set(entries)):
        e = entries.get(name)
        if e is None:
            w = r["shipped"][name]
            lines.append(
                f"| {name} | {w['architecture']} | {w['dataset']} | | | | not measured yet | | | |"
            )
        elif "skipped" in e:
            lines.append(
                f"| {name} | {e['architecture']} | {e['dataset']} | | | "
                f"| skipped: data not downloaded (offline) | | | |"
            )
        elif "failed" in e:
            lines.append(f"| {name} | {e['architecture']} | {e['dataset']} | | | | failed | | | |")
        else:
            lines.append(
                f"| {name} | {e['architecture']} | {e['dataset']} | {e['parameters']:,} "
                f"| {e['epochs']}/{e['max_epochs']} | {e['train_s']:.0f} | {_result(e)} | "
                + " | ".join(_baseline_cells(e))
                + " |"
            )
    return lines


def goal_lines(r: dict) -> list[str]:
    verdict = {True: "met", False: "MISSED", None: "not measured"}
    return [
        f"- {g['goal']}: {verdict[g['met']]}" + (f" ({g['value']})" if g["value"] else "")
        for g in goals(r)
    ]


def race_lines(r: dict) -> list[str]:
    if "race" not in r:
        return ["Not measured yet (`python -m benchmarks.accuracy race`)."]
    lines = [
        "| pipeline | goal | tfdl s | plain Keras s | tfdl/plain | epoch reached, tfdl "
        "| epoch reached, plain | 1st epoch ends, tfdl / plain s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, g in r["race"].items():
        epochs, first = {}, {}
        for side, runs in g["runs"].items():
            epochs[side] = ", ".join(str(x["goal_epoch"] or "-") for x in runs)
            first[side] = _median([x["first_epoch_s"] for x in runs])
        ratio = "" if g["tfdl/plain"] is None else f"{g['tfdl/plain']:.2f}"
        lines.append(
            f"| {name} | {g['goal']:.1%} | {_seconds(g['tfdl_s'])} | {_seconds(g['plain_s'])} "
            f"| {ratio} | {epochs['tfdl']} | {epochs['plain']} "
            f"| {first['tfdl']:.1f} / {first['plain']:.1f} |"
        )
    return lines


def _stamp(r: dict) -> str:
    m = r["machine"]
    dates = sorted({s["date"] for s in r["measured"].values()})
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
    gpu = f"GPU {m['gpu']}" if m.get("gpu") else "no GPU"
    return f"{when} on {m['cpu']}, {m['cores']} cores, {gpu}"


def readme_block(r: dict) -> str:
    """The README's accuracy section body: the table and the goals, stamped."""
    lines = [
        f"Measured {_stamp(r)}; quoted from `benchmarks/results/accuracy.md`, which says "
        "how each figure is taken and why a pipeline was not run.",
        "",
        *table(r),
        "",
        "Goals:",
        "",
        *goal_lines(r),
    ]
    if "race" in r:
        n = len(next(iter(r["race"].values()))["runs"]["tfdl"])
        times = [
            f"{name} {_seconds(g['tfdl_s'])} against {_seconds(g['plain_s'])}"
            + ("" if g["tfdl/plain"] is None else f" (tfdl/plain {g['tfdl/plain']:.2f})")
            for name, g in r["race"].items()
        ]
        lines += [
            "",
            "Time from starting the process to the digits goals, tfdl against the same model in "
            f"a plain Keras script (medians of {n} fresh processes each): "
            + "; ".join(times)
            + ".",
        ]
    return "\n".join(lines)


def markdown(r: dict) -> str:
    m = r["machine"]
    measured: dict[str, list[str]] = {}
    for key, s in r["measured"].items():
        measured.setdefault(f"{s['date']} at {s['commit']}", []).append(key)
    lines = [
        "# tfdl accuracy",
        "",
        f"{_stamp(r)}; Python {m['python']}, TensorFlow {m['tensorflow']}, "
        f"Keras {m['keras']}, MLflow {m['mlflow']}, NumPy {m['numpy']}.",
        "Measured: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in measured.items()) + ".",
        "",
        "## Every shipped pipeline, as shipped, against baselines on its own split",
        "",
        *table(r),
        "",
        "Test result: the held-out test split, after early stopping restored the best "
        "weights (language models: also the validation loss). train s: `tfdl.train` from "
        "start to end (fit, test, pictures, model logging). parameters: trainable. "
        "Baselines fitted on the same training split and scored on the same test split: "
        "majority class (language models: the most frequent character; seq2seq: the most "
        "frequent character at each position); logistic regression on the standardised, "
        "flattened inputs (regression: ridge); on MNIST-1D, pipelines/mlp.yaml's deep_mlp "
        "trained on the same split (checked by the split's hash); for language models the "
        "uniform loss ln(vocabulary) and the training split's character frequencies.",
    ]
    notes = [
        f"- {name}: {e['skipped'] if 'skipped' in e else e['failed']}"
        for name, e in sorted(r.get("pipelines", {}).items())
        if "skipped" in e or "failed" in e
    ]
    if notes:
        lines += ["", "Not run:", "", *notes]
    lines += ["", "## Goals", "", *goal_lines(r)]
    lines += [
        "",
        "Clearly above: by more than twice the standard error of the difference of two "
        "accuracies on the test split's size.",
        "",
        "## Time to the digits goals: tfdl against a plain Keras script",
        "",
        *race_lines(r),
        "",
        "Seconds from starting the process to the end of the first epoch whose test accuracy "
        "reaches the goal, medians over fresh processes alternated pair by pair; tfdl/plain is "
        "the median of the pairs' ratios; the first epoch's end includes starting Python, "
        "importing TensorFlow, loading the data and tracing the model. tfdl: "
        "`benchmarks/tfdl_digits.py` (the shipped pipeline through `tfdl.train`, its MLflow "
        "run included); plain: "
        "`benchmarks/plain_digits.py` (the same split, scaling, layers, optimizer and "
        "callbacks in plain Keras on NumPy arrays). Each process evaluates the test split at "
        "every epoch's end and stops at the goal. tfdl's runs share one MLflow store, as a "
        "user's do; one untimed run of each side comes first.",
    ]
    return "\n".join(lines) + "\n"


def write_readme(r: dict) -> None:
    text = README.read_text()
    head, sep, rest = text.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not (sep and sep2):
        sys.exit(f"error: README.md: no {BEGIN} ... {END} block to write the table into")
    README.write_text(f"{head}{BEGIN}\n{readme_block(r)}\n{END}{tail}")


def readme_quoted() -> str | None:
    """The README's block as it stands (None: no block)."""
    text = README.read_text()
    if BEGIN not in text or END not in text:
        return None
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n")


# ---------------------------------------------------------------------------------- a run


def run(names: list[str], with_race: bool, save) -> dict:
    """Measure `names` (and the race), handing the results so far to `save` after each
    measurement: a run cut short keeps what it measured, each part stamped."""
    out = {"machine": machine(), "pipelines": {}, "references": {}, "measured": {}}
    out["shipped"] = {name: _names(name) for name in shipped()}
    stamp = {"date": out["machine"]["date"], "commit": commit()}
    for name in names:
        start = time.time()
        try:
            entry, _ = isolated("benchmarks.accuracy", "--child", "pipeline", name)
        except RuntimeError as err:
            entry = _names(name) | {"failed": str(err).strip().splitlines()[-1]}
        entry["process_s"] = time.time() - start
        out["pipelines"][name], out["measured"][name] = entry, stamp
        print(f"{name}: {_summary(entry)} ({entry['process_s']:.0f} s)", flush=True)
        save(out)
    # MNIST-1D: the deep_mlp on each split the sequence models of this run trained on
    for name, entry in out["pipelines"].items():
        if entry.get("dataset") != "mnist1d" or "split" not in entry:
            continue
        if entry["split"] not in out["references"]:
            ref, _ = isolated("benchmarks.accuracy", "--child", "reference", name)
            out["references"][entry["split"]] = ref
            print(f"deep_mlp on {name}'s split: accuracy {ref['accuracy']:.3f}", flush=True)
        if entry["architecture"] != "deep_mlp":
            entry["baselines"]["deep_mlp"] = out["references"][entry["split"]]["accuracy"]
    save(out)
    if with_race:
        out["race"] = race()
        out["measured"][RACE] = stamp
        save(out)
    return out


def _names(name: str) -> dict:
    """What a pipeline trains on what, from its file."""
    raw = _raw(name)
    return {"architecture": raw["model"]["arch"], "dataset": raw["data"]["source"]}


def _summary(e: dict) -> str:
    if "skipped" in e:
        return f"skipped: {e['skipped']}"
    if "failed" in e:
        return f"failed: {e['failed']}"
    return f"{_result(e)}, {e['epochs']} epochs, {e['train_s']:.0f} s"


def merged(old: dict, new: dict) -> dict:
    """The earlier results with what was measured again replaced, each part stamped."""
    out = {**old, **{k: v for k, v in new.items() if k not in ("pipelines", "references")}}
    # A pipeline no longer shipped leaves the results with its file.
    kept = {k: v for k, v in old.get("pipelines", {}).items() if k in new["shipped"]}
    out["pipelines"] = kept | new["pipelines"]
    splits = {e.get("split") for e in out["pipelines"].values()}
    references = old.get("references", {}) | new["references"]
    out["references"] = {k: v for k, v in references.items() if k in splits}
    measured = old.get("measured", {})
    measured = {k: v for k, v in measured.items() if k in out["pipelines"] or k == RACE}
    out["measured"] = measured | new["measured"]
    if "race" not in new and "race" in old:
        out["race"] = old["race"]
    return out


def write(results: dict) -> None:
    """accuracy.json, then accuracy.md and the README's block rendered from it."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "accuracy.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "accuracy.md").write_text(markdown(results))
    write_readme(results)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        child(*argv[1:])
        return
    previous = RESULTS / "accuracy.json"
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return
    if argv == ["--readme"]:
        write(json.loads(previous.read_text()))
        return
    names = [a for a in argv if a != RACE] if argv else shipped()
    unknown = sorted(set(names) - set(shipped()))
    if unknown:
        allowed = ", ".join([*shipped(), RACE])
        sys.exit(f"error: pipelines: unknown {unknown}; allowed: {allowed}, or --readme")
    old = json.loads(previous.read_text()) if previous.exists() else None

    def save(new: dict) -> dict:
        results = merged(old, new) if old else new
        write(results)
        return results

    print(markdown(save(run(names, not argv or RACE in argv, save))))


if __name__ == "__main__":
    main(sys.argv[1:])
