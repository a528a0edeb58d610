"""A corpus of bad input, each case through the real `tfdl` command against a fresh store.

Every case must end with exit code 2 and a single line on stderr,
`error: <field>: <problem>[; allowed: ...]`, naming the field or file at fault, and must
leave the MLflow store as it found it: no run, no experiment, no artifact folder.
"""

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from .conftest import TINY, free_port, run_tfdl

PIPELINE = "{tmp}/pipeline.yaml"  # {tmp} stands for the case's own folder
TUNING = "{tmp}/tuning.yaml"
RUN_ID = "0123456789abcdef0123456789abcdef"  # well formed, in no store
OPTIMIZERS = "sgd, momentum, nesterov, adagrad, adadelta, rmsprop, adam, adamw"


@dataclass
class Case:
    id: str
    args: tuple[str, ...]
    field: str  # the line must start `error: <field>: `
    allowed: str | None  # a piece of the `allowed:` part; None where the error has none
    files: dict = field(default_factory=dict)  # name -> text, or a mapping written as YAML
    store: str = "fresh"  # how the store looks before the command: see make_store
    problem: str | None = None  # a piece of the problem, where the field alone is ambiguous
    marks: tuple = ()


def train(id, field, allowed, *overrides, pipeline=TINY, files=None, **kw) -> Case:
    """`tfdl train` on a pipeline (TINY unless given) with overrides."""
    files = {"pipeline.yaml": pipeline, **(files or {})}
    return Case(id, ("train", PIPELINE, *overrides), field, allowed, files, **kw)


def with_section(name, value) -> dict:
    return {**TINY, name: value}


def csv_pipeline(target="label") -> dict:
    data = {"source": "csv", "path": "{tmp}/data.csv", "target": target}
    return {**TINY, "data": data}


def csv_case(id, field, allowed, text, problem=None, target="label") -> Case:
    return train(
        id, field, allowed, pipeline=csv_pipeline(target), files={"data.csv": text}, problem=problem
    )


GOOD_CSV = "a,b,label\n" + "".join(f"{i},{i % 7},{i % 2}\n" for i in range(30))
TUNES = "".join(f"X:{i}\nT:Tune {i}\nK:D\n|:abcd efga|bagf edcB:|\n\n" for i in range(1, 7))
ABC = {
    **TINY,
    "data": {"source": "abc_tunes", "path": "{tmp}/tunes.abc", "sequence_length": 8},
    "model": {"arch": "char_lm", "units": [8], "embedding_dim": 4},
}


def abc_case(id, field, allowed, corpus, *overrides, problem=None) -> Case:
    return train(
        id, field, allowed, *overrides, pipeline=ABC, files={"tunes.abc": corpus}, problem=problem
    )


SPACE = {"model.dropout": {"type": "float", "min": 0.0, "max": 0.5, "step": 0.25}}


def png(size=(12, 12)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, (10, 200, 30)).save(out, format="PNG")
    return out.getvalue()


PNG = png()
FOLDER = {"source": "image_folder", "path": "{tmp}/pictures", "image_size": [8, 8]}
SMALL_CNN = {"arch": "cnn2d", "filters": [4], "dense_units": [4]}


def folder_case(id, field, allowed, files, problem=None, **data) -> Case:
    """`tfdl train` on an image folder laid out by `files` (names under pictures/)."""
    pipeline = {**TINY, "data": {**FOLDER, **data}, "model": SMALL_CNN}
    files = {f"pictures/{name}": content for name, content in files.items()}
    return train(id, field, allowed, pipeline=pipeline, files=files, problem=problem)


# Nine levels of nine aliases: a few hundred bytes standing for 9**9 strings.
LAUGHS = (
    "description: x\n"
    + "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9))
)
DUPLICATE = "data: {source: digits}\nmodel: {arch: deep_mlp}\ndata: {source: iris}\n"

TWO_CLASSES = {"a/1.png": PNG, "b/1.png": PNG}
SPLITTABLE = {f"{c}/{i}.png": PNG for c in "ab" for i in range(6)}  # enough for 3 splits
TEXTS = {"source": "text_folder", "path": "{tmp}/texts", "sequence_length": 4}


def text_case(id, field, allowed, files, problem=None, **data) -> Case:
    pipeline = {**TINY, "data": {**TEXTS, **data}, "model": {"arch": "lstm", "units": [4]}}
    files = {f"texts/{name}": content for name, content in files.items()}
    return train(id, field, allowed, pipeline=pipeline, files=files, problem=problem)


def tune(id, field, allowed, problem=None, store="fresh", **job) -> Case:
    """`tfdl tune` on a search over TINY; `job` replaces top-level settings."""
    job = {"pipeline": PIPELINE, "epochs": 1, "max_trials": 1, "space": SPACE, **job}
    files = {"pipeline.yaml": TINY, "tuning.yaml": job}
    return Case(id, ("tune", TUNING), field, allowed, files, store=store, problem=problem)


not_as_root = pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="permission bits do not bind root"
)
TRACKING_URI = "MLFLOW_TRACKING_URI"
WRITABLE = "sqlite:///path/to/mlflow.db in a writable folder"

CASES = [
    # --- the files themselves
    Case(
        "missing-pipeline",
        ("train", "{tmp}/nowhere.yaml"),
        "{tmp}/nowhere.yaml",
        "a pipeline YAML file",
    ),
    Case(
        "malformed-yaml",
        ("train", PIPELINE),
        PIPELINE,
        None,
        {"pipeline.yaml": "data: [1, 2\n"},
        problem="malformed YAML at line",
    ),
    Case(
        "tab-indented-yaml",
        ("train", PIPELINE),
        PIPELINE,
        None,
        {"pipeline.yaml": "data:\n\tsource: digits\n"},
        problem="malformed YAML",
    ),
    Case(
        "top-level-list",
        ("train", PIPELINE),
        PIPELINE,
        "data, model, train",
        {"pipeline.yaml": "- data\n- model\n"},
        problem="not a mapping",
    ),
    Case(
        "missing-tuning-file",
        ("tune", "{tmp}/nowhere.yaml"),
        "{tmp}/nowhere.yaml",
        "a pipeline YAML file",
    ),
    # --- a list where a mapping belongs
    train("data-is-a-list", "data", "a mapping", pipeline=with_section("data", ["digits"])),
    train("train-is-a-list", "train", "a mapping", pipeline=with_section("train", [1, 2])),
    train(
        "callbacks-is-a-list",
        "callbacks",
        "a mapping",
        pipeline=with_section("callbacks", ["early_stopping"]),
    ),
    train("optimizer-is-a-list", "train.optimizer", "a mapping", "train.optimizer=[adam]"),
    train("optimizer-is-a-word", "train.optimizer", "a mapping", "train.optimizer=adam"),
    train(
        "callback-is-a-list",
        "callbacks.early_stopping",
        "a mapping",
        "callbacks.early_stopping=[val_loss]",
    ),
    train("tags-is-a-list", "tracking.tags", "a mapping", "tracking.tags=[a,b]"),
    # --- unknown keys at every level
    train("unknown-top-key", "trian", "data, model, train", pipeline=with_section("trian", {})),
    train("unknown-data-key", "data.as_image", "as_images", "data.as_image=true"),
    train("unknown-model-key", "model.unitz", "units", "model.unitz=[3]"),
    train("unknown-train-key", "train.epoch", "epochs", "train.epoch=3"),
    train("unknown-optimizer-key", "train.optimizer.lr", "learning_rate", "train.optimizer.lr=0.1"),
    train(
        "unknown-callback", "callbacks.tensorboard", "early_stopping", "callbacks.tensorboard={}"
    ),
    train(
        "unknown-callback-key",
        "callbacks.early_stopping.patiance",
        "patience",
        "callbacks.early_stopping.patiance=2",
    ),
    train(
        "unknown-schedule-key",
        "callbacks.lr_schedule.warmup",
        "warmup_epochs",
        "callbacks.lr_schedule={kind: cosine, warmup: 2}",
    ),
    train("unknown-tracking-key", "tracking.tag", "tags", "tracking.tag={a: b}"),
    tune("unknown-tuning-key", "max_trial", "max_trials", max_trial=3),
    # --- wrong types
    train("epochs-a-word", "train.epochs", "an integer", "train.epochs=many"),
    train("batch-size-a-fraction", "train.batch_size", "an integer", "train.batch_size=1.5"),
    train(
        "learning-rate-a-word",
        "train.optimizer.learning_rate",
        "a number",
        "train.optimizer.learning_rate=fast",
    ),
    train("units-a-word", "model.units", "a list", "model.units=wide"),
    train("width-a-fraction", "model.units[1]", "an integer", "model.units=[16,2.5]"),
    train("flag-a-word", "model.batch_norm", "true or false", "model.batch_norm=perhaps"),
    train("experiment-a-list", "tracking.experiment", "a string", "tracking.experiment=[a]"),
    train(
        "experiment-empty", "tracking.experiment", "at least 1 character", 'tracking.experiment=""'
    ),
    train("tag-value-a-list", "tracking.tags.owner", "a string", "tracking.tags={owner: [me]}"),
    # --- numbers out of range
    train("zero-epochs", "train.epochs", "> 0", "train.epochs=0"),
    train("negative-epochs", "train.epochs", "> 0", "train.epochs=-3"),
    train("zero-batch-size", "train.batch_size", "> 0", "train.batch_size=0"),
    train("negative-batch-size", "train.batch_size", "> 0", "train.batch_size=-32"),
    train(
        "negative-learning-rate",
        "train.optimizer.learning_rate",
        "> 0",
        "train.optimizer.learning_rate=-0.1",
    ),
    train("dropout-of-one", "model.dropout", "< 1.0", "model.dropout=1.0"),
    train("seed-beyond-32-bits", "train.seed", "< 4294967296", "train.seed=4294967296"),
    train("data-seed-beyond-32-bits", "data.seed", "< 4294967296", "data.seed=4294967296"),
    # --- unknown names
    train("unknown-architecture", "model.arch", "deep_mlp", "model.arch=lenet"),
    train("unknown-dataset", "data.source", "digits", "data.source=imagenet"),
    train("unknown-optimizer", "train.optimizer.name", OPTIMIZERS, "train.optimizer.name=adamax"),
    train("unknown-loss", "train.loss", "sparse_categorical_crossentropy", "train.loss=hinge"),
    train("unknown-metric", "train.metrics[0]", "accuracy", "train.metrics=[f1]"),
    train(
        "unknown-schedule",
        "callbacks.lr_schedule.kind",
        "cosine",
        "callbacks.lr_schedule={kind: x}",
    ),
    tune("unknown-tuner", "tuner", "random, grid, hyperband, bayesian", tuner="annealing"),
    # --- valid names that do not fit together or the task
    train("loss-unfit-for-task", "train.loss", "sparse_categorical_crossentropy", "train.loss=mse"),
    train("metric-unfit-for-task", "train.metrics", "accuracy", "train.metrics=[auc]"),
    train("arch-unfit-for-task", "model.arch", "deep_mlp", "model={arch: perceptron}"),
    train(
        "monitor-not-logged",
        "callbacks.early_stopping.monitor",
        "val_accuracy",
        "callbacks.early_stopping={monitor: val_acc}",
    ),
    train(
        "two-clippings",
        "train.optimizer",
        None,
        "train.optimizer.clipnorm=1",
        "train.optimizer.clipvalue=1",
        problem="set at most one of clipnorm",
    ),
    # --- overrides
    train("override-to-no-section", "nosuch", "data, model, train", "nosuch.path=1"),
    train("override-below-a-value", "train.epochs", "a mapping", "train.epochs.max=3"),
    train("override-into-no-key", "model.layers", "units", "model.layers.depth=3"),
    train("override-without-value", "train.epochs", "dotted.path=value", "train.epochs"),
    train("override-bad-yaml", "model.units", "a YAML value", "model.units=[1,2"),
    # --- CSV data
    train(
        "csv-missing",
        "data.path",
        "an existing CSV file",
        pipeline=csv_pipeline(),
        problem="no such file",
    ),
    csv_case("csv-empty", "data.path", "a CSV file with a header", "", problem="is empty"),
    csv_case("csv-no-target", "data.target", "a, b, label", GOOD_CSV, target="y"),
    csv_case(
        "csv-text-feature",
        "data.path",
        "numeric columns",
        GOOD_CSV.replace("\n3,", "\nthree,"),
        problem="non-numeric feature columns",
    ),
    csv_case(
        "csv-nan",
        "data.path",
        "without empty cells",
        GOOD_CSV.replace("\n3,3,", "\n3,,"),
        problem="missing values",
    ),
    csv_case("csv-infinite", "data.path", "finite", GOOD_CSV.replace("\n3,", "\ninf,")),
    csv_case("csv-too-few-rows", "data.path", "at least 10 rows", GOOD_CSV[:40]),
    csv_case("csv-target-only", "data.path", "feature columns", "label\n" + "1\n0\n" * 10),
    csv_case(
        "csv-one-class", "data.target", "at least 2 distinct", "a,label\n" + "1,1\n2,1\n" * 10
    ),
    # --- text corpora
    abc_case("corpus-one-character", "data.path", "at least two distinct", "a" * 500),
    abc_case("corpus-empty", "data.path", "non-empty UTF-8", "\n\n"),
    abc_case("corpus-two-tunes", "data.val_fraction", "at least 3 tunes", TUNES[:80]),
    abc_case(
        "corpus-shorter-than-a-window",
        "data.sequence_length",
        "a sequence_length below",
        TUNES,
        "data.sequence_length=500",
    ),
    # --- data the architecture cannot take (found when the model is built: TensorFlow loads)
    train(
        "images-into-an-rnn",
        "model",
        None,
        "data.as_images=true",
        "model={arch: simple_rnn, units: [4]}",
        problem="cannot build simple_rnn for input shape (8, 8, 1)",
    ),
    train(
        "flat-rows-into-cnn2d",
        "model",
        None,
        "model={arch: cnn2d, filters: [4]}",
        problem="data.as_images: true",
    ),
    # --- run ids that are in no store
    Case("resume-unknown-run", ("train", "--resume", RUN_ID), "--resume", "a run id"),
    Case("evaluate-unknown-run", ("evaluate", "--run-id", RUN_ID), "--run-id", "a run id"),
    Case(
        "predict-unknown-run",
        ("predict", "--run-id", RUN_ID, "--input", "{tmp}/rows.csv"),
        "--run-id",
        "a run id",
        {"rows.csv": "a,b\n1,2\n"},
    ),
    Case("generate-unknown-run", ("generate", "--run-id", RUN_ID), "--run-id", "a run id"),
    Case(
        "evaluate-unknown-run-existing-store",
        ("evaluate", "--run-id", RUN_ID),
        "--run-id",
        "a run id",
        store="existing",
    ),
    Case(
        "resume-with-a-pipeline",
        ("train", PIPELINE, "--resume", RUN_ID),
        "--resume",
        "--resume RUN_ID alone",
        {"pipeline.yaml": TINY},
    ),
    Case(
        "compare-on-no-store",
        ("compare", "--experiment", "nope"),
        "--experiment",
        "train a pipeline first",
    ),
    # --- search spaces
    tune("space-empty", "space", "at least 1 item", space={}),
    tune("space-a-list", "space", "a mapping", space=["model.dropout"]),
    tune(
        "int-min-above-max",
        "space.train.epochs",
        None,
        space={"train.epochs": {"type": "int", "min": 5, "max": 2}},
        problem="min 5 is above max 2",
    ),
    tune(
        "float-min-above-max",
        "space.model.dropout",
        None,
        space={"model.dropout": {"type": "float", "min": 0.4, "max": 0.1}},
        problem="min 0.4 is above max 0.1",
    ),
    tune(
        "choice-without-values",
        "space.model.activation.values",
        "at least 1 item",
        space={"model.activation": {"type": "choice", "values": []}},
    ),
    tune(
        "grid-over-unbounded-float",
        "space.model.dropout",
        "a step",
        tuner="grid",
        space={"model.dropout": {"type": "float", "min": 0.0, "max": 0.5}},
    ),
    tune(
        "log-sampling-from-zero",
        "space.train.optimizer.learning_rate",
        None,
        space={
            "train.optimizer.learning_rate": {
                "type": "float",
                "min": 0,
                "max": 0.1,
                "sampling": "log",
            }
        },
        problem="log sampling needs min > 0",
    ),
    tune(
        "unknown-param-type",
        "space.model.dropout.type",
        "choice, int, float, bool",
        space={"model.dropout": {"type": "real", "min": 0.0, "max": 0.5}},
    ),
    tune(
        "space-path-not-a-setting",
        "space.model.dropuot",
        "model.dropout",
        space={"model.dropuot": {"type": "bool"}},
    ),
    tune(
        "space-value-invalid-there",
        "space.model.dropout",
        "< 1.0",
        space={"model.dropout": {"type": "float", "min": 0.0, "max": 1.5, "step": 0.5}},
    ),
    tune("search-pipeline-missing", "pipeline", "a pipeline YAML file", pipeline="nowhere.yaml"),
    tune("objective-not-logged", "objective.metric", "val_accuracy", objective={"metric": "f1"}),
    tune("zero-trials", "max_trials", "> 0", max_trials=0),
    # --- image folders, text folders, text columns, the Keras text sets
    folder_case("folder-missing", "data.path", "one subfolder of images per class", {}),
    folder_case("folder-no-classes", "data.path", "2 or more", {".keep": "x"}, "no subfolders"),
    folder_case("folder-one-class", "data.path", "2 or more", {"a/1.png": PNG}, "only 'a'"),
    folder_case(
        "folder-not-an-image", "data.path", "files only", {**TWO_CLASSES, "b/n.txt": "hi"}, "n.txt"
    ),
    folder_case(
        "folder-broken-image", "data.path", "png", {**TWO_CLASSES, "b/2.png": "no"}, "2.png is not"
    ),
    folder_case("folder-empty-class", "data.path", "images in it", {"a/1.png": PNG, "b/.k": "x"}),
    folder_case("folder-unknown-class", "data.classes", "a, b", TWO_CLASSES, classes=["a", "c"]),
    folder_case("images-too-small", "data.image_size", "at least 2", SPLITTABLE, image_size=[1, 8]),
    folder_case("image-size-zero", "data.image_size[0]", ">= 1", TWO_CLASSES, image_size=[0, 8]),
    folder_case(
        "colour-mode", "data.color_mode", "grayscale, rgb, rgba", TWO_CLASSES, color_mode="cmyk"
    ),
    folder_case("folder-cache", "data.cache", "none, memory, disk", TWO_CLASSES, cache="ssd"),
    text_case(
        "text-not-utf8",
        "data.path",
        "UTF-8",
        {"neg/1.txt": "bad", "pos/1.txt": "très bien".encode("latin-1")},
        "pos/1.txt is not UTF-8",
    ),
    text_case("text-one-class", "data.path", "2 or more", {"neg/1.txt": "bad"}),
    text_case("text-zero-length", "data.sequence_length", ">= 1", {}, sequence_length=0),
    train(
        "csv-text-missing",
        "data.text",
        "a, b",
        pipeline={**TINY, "data": {**csv_pipeline()["data"], "text": "review"}},
        files={"data.csv": GOOD_CSV},
        problem="no column 'review'",
    ),
    train(
        "csv-text-twice",
        "data",
        None,
        pipeline={**TINY, "data": {**csv_pipeline()["data"], "text": "a", "categorical": ["a"]}},
        files={"data.csv": GOOD_CSV},
        problem="named twice",
    ),
    train(
        "imdb-file-missing",
        "data.path",
        None,
        "data.path={tmp}/imdb.npz",
        pipeline={**TINY, "data": {"source": "imdb"}, "model": {"arch": "lstm"}},
        problem="imdb.npz",
    ),
    Case(
        "example-data-not-empty",
        ("make-example-data", "shapes", "{tmp}"),
        "tfdl make-example-data FOLDER",
        "a new or empty folder",
        {"other.txt": "x"},
    ),
    Case(
        "example-data-size",
        ("make-example-data", "shapes", "{tmp}/new", "--size", "2"),
        "--size",
        "8 to 1024",
    ),
    Case(
        "example-data-seed",
        ("make-example-data", "shapes", "{tmp}/new", "--seed", "-3"),
        "--seed",
        "0 to",
    ),
    # --- stores that cannot take a run (the pipeline and the search are valid)
    train("store-under-a-file", TRACKING_URI, WRITABLE, store="under-a-file"),
    train("store-is-a-folder", TRACKING_URI, WRITABLE, store="db-is-a-folder"),
    train("store-not-sqlite", TRACKING_URI, WRITABLE, store="not-sqlite"),
    train("store-plain-folder", TRACKING_URI, WRITABLE, store="plain-folder"),
    train("store-read-only", TRACKING_URI, WRITABLE, store="read-only", marks=(not_as_root,)),
    tune("search-store-under-a-file", TRACKING_URI, WRITABLE, store="under-a-file"),
    train("store-in-memory", TRACKING_URI, WRITABLE, store="in-memory", problem="no database file"),
    train("store-unknown-scheme", TRACKING_URI, WRITABLE, store="unknown-scheme", problem="ftp://"),
    train("store-no-driver", TRACKING_URI, "pip install pg8000", store="no-driver"),
    train(
        "store-no-database",
        TRACKING_URI,
        "a running PostgreSQL server",
        store="no-database",
        problem="postgresql://tfdl:***@127.0.0.1:",  # its password never shown
    ),
    train("store-no-server", TRACKING_URI, "a running MLflow server", store="no-server"),
    tune("search-store-no-server", TRACKING_URI, "a running MLflow server", store="no-server"),
    Case(
        "compare-store-no-server",
        ("compare",),
        TRACKING_URI,
        "a running MLflow server",
        store="no-server",
    ),
    train(
        "experiment-deleted",
        "tracking.experiment",
        "mlflow experiments restore",
        store="deleted-experiment",
        problem="deleted experiment",
    ),
    # --- command-line options
    Case(
        "lr-find-range-downwards",
        ("lr-find", PIPELINE, "--min-lr", "1", "--max-lr", "0.1"),
        "--min-lr",
        "0 < --min-lr < --max-lr",
        {"pipeline.yaml": TINY},
    ),
    Case(
        "generate-no-length", ("generate", "--run-id", RUN_ID, "--length", "0"), "--length", "1 to"
    ),
    Case("unknown-command", ("fit", PIPELINE), "tfdl", "see `tfdl --help`"),
    # --- numbers that parse but cannot work
    Case("ui-port-too-high", ("ui", "--port", "70000"), "--port", "1 to 65535"),
    Case("serve-port-zero", ("serve", "--run-id", RUN_ID, "--port", "0"), "--port", "1 to 65535"),
    Case(
        "oracle-port-too-high",
        ("tune", TUNING, "--chief", "--oracle-port", "99999"),
        "--oracle-port",
        "1 to 65535",
    ),
    Case(
        "lr-find-max-inf",
        ("lr-find", PIPELINE, "--max-lr", "inf"),
        "--max-lr",
        "a finite number",
        {"pipeline.yaml": TINY},
    ),
    Case(
        "lr-find-min-nan",
        ("lr-find", PIPELINE, "--min-lr", "nan"),
        "--min-lr",
        "a finite number",
        {"pipeline.yaml": TINY},
    ),
    Case(
        "generate-negative-seed", ("generate", "--run-id", RUN_ID, "--seed", "-1"), "--seed", "0 to"
    ),
    train(
        "epochs-beyond-int32", "train.epochs", "2147483647", "train.epochs=100000000000000000000"
    ),
    train("batch-beyond-int32", "train.batch_size", "2147483647", "train.batch_size=4294967296"),
    # --- YAML that parses but is wrong
    train(
        "yaml-duplicate-key",
        PIPELINE,
        None,
        files={"pipeline.yaml": DUPLICATE},
        problem="the key 'data' is given twice",
    ),
    train(
        "yaml-billion-laughs",
        PIPELINE,
        None,
        files={"pipeline.yaml": LAUGHS},
        problem="aliases expand to more than",
    ),
    train(
        "override-duplicate-key",
        "train.optimizer",
        "a YAML value",
        "train.optimizer={name: sgd, name: adam}",
        problem="given twice",
    ),
    # --- what MLflow would refuse once the run exists
    train(
        "experiment-name-too-long",
        "tracking.experiment",
        "at most 500",
        "tracking.experiment=" + "e" * 501,
    ),
    train(
        "experiment-name-control",
        "tracking.experiment",
        "no control characters",
        'tracking.experiment="a\\tb"',
    ),
    train(
        "tag-key-characters",
        "tracking.tags",
        "letters, digits",
        "tracking.tags={'a!*?': v}",
        problem="'!*?'",
    ),
    train(
        "tag-key-too-long", "tracking.tags", "at most 236", "tracking.tags={" + "k" * 300 + ": v}"
    ),
    train(
        "tag-key-reserved",
        "tracking.tags",
        None,
        "tracking.tags={mlflow.runName: v}",
        problem="sets itself",
    ),
    train(
        "tag-key-a-path",
        "tracking.tags",
        None,
        "tracking.tags={'../up': v}",
        problem="another path",
    ),
    train(
        "tag-value-too-long",
        "tracking.tags.note",
        "at most 8000",
        "tracking.tags={note: " + "v" * 8001 + "}",
    ),
    train("param-value-too-long", "description", "at most 6000", "description=" + "d" * 6001),
]


def make_store(kind: str, folder: Path) -> str:
    """The tracking URI of a store in `folder` as `kind` describes it."""
    db = folder / "mlflow.db"
    uri = f"sqlite:///{db}"
    match kind:
        case "fresh":
            pass
        case "existing":  # a store made by an earlier command: tables, the Default experiment
            MlflowClient(uri).search_experiments()
        case "under-a-file":  # its folder cannot be created: a file stands in the way
            (folder / "file").write_text("not a folder\n")
            uri = f"sqlite:///{folder / 'file' / 'sub' / 'mlflow.db'}"
        case "db-is-a-folder":
            db.mkdir()
        case "not-sqlite":
            db.write_text("these are not the tables you are looking for\n")
        case "plain-folder":
            uri = str(folder / "mlruns")
        case "read-only":
            folder.chmod(0o555)
        case "deleted-experiment":  # TINY's experiment, deleted: MLflow keeps its name
            client = MlflowClient(uri)
            client.delete_experiment(client.create_experiment("test"))
        case "in-memory":
            uri = "sqlite://"
        case "unknown-scheme":
            uri = "ftp://127.0.0.1/mlruns"
        case "no-driver":  # a driver make install leaves out (psycopg's: test_team_server)
            uri = "postgresql+pg8000://tfdl@127.0.0.1:1/mlflow"
        case "no-database":  # the driver is there; nothing listens on the port
            uri = f"postgresql://tfdl:secret@127.0.0.1:{free_port()}/mlflow"
        case "no-server":  # a free port: nothing listens there
            uri = f"http://127.0.0.1:{free_port()}"
    return uri


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Everything under `folder`: file contents, None for folders."""
    return {
        str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes()
        for p in sorted(folder.rglob("*"))
    }


def fill(text: str, tmp: Path) -> str:
    return text.replace("{tmp}", str(tmp))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path):
    for name, content in case.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):  # a picture, a file in another encoding
            (tmp_path / name).write_bytes(content)
            continue
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        (tmp_path / name).write_text(fill(text, tmp_path))
    folder = tmp_path / "store"
    folder.mkdir()
    uri = make_store(case.store, folder)
    before = snapshot(folder)
    try:
        out = run_tfdl(*(fill(a, tmp_path) for a in case.args), env={"MLFLOW_TRACKING_URI": uri})
    finally:
        folder.chmod(0o755)

    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), out.stderr
    line = lines[0]
    assert line.startswith(f"error: {fill(case.field, tmp_path)}: "), line
    problem, _, allowed = line.partition("; allowed: ")
    if case.allowed is not None:
        assert case.allowed in allowed, line
    if case.problem is not None:
        assert case.problem in problem, line

    assert snapshot(folder) == before  # no database, artifact or backup folder appeared
    db = folder / "mlflow.db"
    if db.is_file() and db.read_bytes().startswith(b"SQLite format 3\x00"):
        client = MlflowClient(f"sqlite:///{db}")
        experiments = client.search_experiments(view_type=ViewType.ALL)
        made = ["test"] if case.store == "deleted-experiment" else []  # by make_store
        assert sorted(e.name for e in experiments) == sorted(["Default", *made])
        ids = [e.experiment_id for e in experiments]
        assert client.search_runs(ids, run_view_type=ViewType.ALL) == []


def test_the_corpus_covers_enough_cases():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
