"""The `tfdl` command. TensorFlow is imported only by the commands that train.

Bad input is one line on stderr, `error: <field>: <problem>; allowed: ...`, exit code 2.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from tfdl.errors import ConfigError
from tfdl.store import PROJECT

PIPELINES = PROJECT / "pipelines"


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors in the project's one-line form."""

    def error(self, message):
        raise ConfigError(self.prog, message, "see `tfdl --help`")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="tfdl",
        description="Train, track and compare the models of an introductory deep-learning course.",
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a pipeline and record it in MLflow")
    t.add_argument("pipeline", nargs="?", help="a pipeline YAML file, e.g. pipelines/mlp.yaml")
    t.add_argument(
        "--resume", metavar="RUN_ID", help="continue an interrupted run from its last epoch"
    )
    t.add_argument(
        "overrides", nargs="*", help="dotted.path=value, e.g. train.epochs=3 model.units=[64,32]"
    )

    k = sub.add_parser("tune", help="Keras Tuner search over a pipeline, every trial an MLflow run")
    k.add_argument("tuning", help="a search file, e.g. tuning/mlp_random.yaml")
    k.add_argument("overrides", nargs="*", help="top-level settings, e.g. max_trials=3 epochs=2")
    k.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    role = k.add_mutually_exclusive_group()
    role.add_argument("--chief", action="store_true", help="serve the search to workers")
    role.add_argument(
        "--worker", type=int, metavar="N", help="run trials for the chief as worker N"
    )
    k.add_argument("--oracle-port", type=int, default=8000, help="the chief's port on 127.0.0.1")

    f = sub.add_parser("lr-find", help="sweep learning rates and suggest one")
    f.add_argument("pipeline", help="a pipeline YAML file")
    f.add_argument("overrides", nargs="*", help="dotted.path=value")
    f.add_argument("--min-lr", type=float, default=1e-7)
    f.add_argument("--max-lr", type=float, default=10.0)
    f.add_argument("--steps", type=int, default=200, help="optimizer steps in the sweep")

    sub.add_parser("list", help="list architectures, datasets and pipelines")

    c = sub.add_parser("compare", help="a table of runs and their learning curves")
    c.add_argument("--experiment", action="append", help="an experiment name (repeatable)")
    c.add_argument("--metric", help="default: val_loss, or loss")
    c.add_argument("--filter", help="MLflow search syntax, e.g. \"params.model.arch = 'cnn2d'\"")
    c.add_argument("--format", choices=("table", "csv", "markdown"), default="table")
    c.add_argument("--plot", help="where to save the learning-curve overlay PNG")

    e = sub.add_parser("evaluate", help="metrics of a logged model on a split of its data")
    e.add_argument("--run-id", required=True)
    e.add_argument("--split", choices=("train", "val", "test"), default="test")

    d = sub.add_parser("predict", help="predictions of a logged model for new inputs")
    d.add_argument("--run-id", required=True)
    d.add_argument("--input", required=True, help="a .csv (numeric columns) or .npy file")
    d.add_argument("--output", help="a CSV file to write (default: standard output)")

    g = sub.add_parser("generate", help="text from a logged language or seq2seq model")
    g.add_argument("--run-id", required=True, help="the MLflow run that trained the model")
    g.add_argument("--prompt", default="", help="text to start from (seq2seq: the input)")
    g.add_argument("--length", type=int, default=300, help="characters to generate")
    g.add_argument("--temperature", type=float, default=1.0, help="sampling temperature > 0")
    g.add_argument("--seed", type=int, default=0, help="seed of the sampler")

    u = sub.add_parser("ui", help="open the MLflow UI over the project store on 127.0.0.1")
    u.add_argument("--port", type=int, default=5000)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        commands = {
            "train": _train,
            "lr-find": _lr_find,
            "tune": _tune,
            "list": _list,
            "generate": _generate,
            "evaluate": _evaluate,
            "compare": _compare,
            "predict": _predict,
            "ui": _ui,
        }
        return commands[args.command](args)
    except ConfigError as err:
        print(err.line(), file=sys.stderr)
        return 2


def _import_tensorflow_quietly():
    """Import TensorFlow without its C++ start-up notices (no CUDA driver, CPU features).

    They are written to the stderr file descriptor before logging is set up, so no
    setting hides them; TF_CPP_MIN_LOG_LEVEL (default here 3) governs the rest.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] != "3":
        import tensorflow  # noqa: F401  # the user asked to see TensorFlow's logs

        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _check_store() -> None:
    """Refuse a store that cannot take a run before TensorFlow loads, not after training.

    Nothing is created here: a store that does not exist yet is only checked to be creatable.
    """
    from urllib.parse import urlparse

    from tfdl.store import sqlite_path, tracking_uri

    uri, field = tracking_uri(), "MLFLOW_TRACKING_URI"
    allowed = "sqlite:///path/to/mlflow.db in a writable folder, or a tracking server's URL"
    db = sqlite_path(uri)
    if db is None:
        opted_in = os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("true", "1")
        if urlparse(uri).scheme in ("", "file") and not opted_in:
            raise ConfigError(field, f"{uri} is a plain folder, which MLflow refuses", allowed)
        return  # a server answers for itself
    if db.exists():
        if not db.is_file():
            raise ConfigError(field, f"{db} is not a file", allowed)
        if not (os.access(db, os.W_OK) and os.access(db.parent, os.W_OK)):
            raise ConfigError(field, f"{db} is not writable", allowed)
        with open(db, "rb") as file:
            header = file.read(16)
        if header and header != b"SQLite format 3\x00":  # an empty file is a new database
            raise ConfigError(field, f"{db} is not an SQLite database", allowed)
        return
    folder = next(p for p in db.parents if p.exists())  # what MLflow would create it in
    if not folder.is_dir():
        raise ConfigError(field, f"cannot create {db}: {folder} is not a folder", allowed)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(field, f"cannot create {db}: {folder} is not writable", allowed)


def _train(args) -> int:
    from tfdl.compile import prepare
    from tfdl.config import load_pipeline

    # Everything that can reject the input runs before TensorFlow loads.
    if args.resume:
        if args.pipeline or args.overrides:
            raise ConfigError(
                "--resume", "takes no pipeline or overrides", "tfdl train --resume RUN_ID"
            )
        from tfdl.tracking import resumable

        cfg, _ = resumable(args.resume)
    elif args.pipeline:
        cfg = load_pipeline(args.pipeline, args.overrides)
    else:
        raise ConfigError(
            "tfdl train", "needs a pipeline file or --resume RUN_ID", "tfdl train PIPELINE.yaml"
        )
    prepared = prepare(cfg)
    _check_store()
    # SIGTERM ends the run like Ctrl-C: marked KILLED in MLflow, never left RUNNING.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        _import_tensorflow_quietly()
        from tfdl.train import train

        result = train(cfg, pipeline_path=args.pipeline, prepared=prepared, resume_id=args.resume)
    except ConfigError:
        raise
    except KeyboardInterrupt:
        run = _last_run()
        if run is None:
            print("interrupted before a run started: nothing was recorded", file=sys.stderr)
        else:
            resume = f"continue it with tfdl train --resume {run}"
            print(f"interrupted: run {run} is marked KILLED; {resume}", file=sys.stderr)
        return 130
    except FloatingPointError as err:  # the loss diverged: a result, not a bug
        print(f"error: training diverged: {err}; the run is marked FAILED", file=sys.stderr)
        return 1
    except Exception as err:  # one line here; the run keeps the traceback
        run = _last_run()
        where = f"; run {run} is marked FAILED, its error.txt has the traceback" if run else ""
        print(f"error: training failed: {_one_line(err)}{where}", file=sys.stderr)
        return 1
    metrics = ", ".join(f"test_{k}={v:.4f}" for k, v in result.test_metrics.items())
    print(f"run {result.run_id} finished: {metrics}")
    print("compare runs with `make ui`")
    return 0


def _last_run() -> str | None:
    """The id of the run this process trained last (or was training), if it started one."""
    if "mlflow" not in sys.modules:  # stopped before anything was recorded
        return None
    from tfdl.tracking import last_run_id

    return last_run_id()


def _one_line(err: Exception) -> str:
    """`Type: message` on one line; a long message (e.g. with a traceback in it) keeps its
    first and last lines."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if len(lines) > 1:
        text += f" ... {lines[-1]}"
    return f"{type(err).__name__}: {text}"


def _tune(args) -> int:
    from tfdl.compile import logged_names, prepare
    from tfdl.config import load_tuning, validate

    job, base = load_tuning(args.tuning, args.overrides)
    resolved, _ = prepare(validate(base))
    if job.objective.metric not in logged_names(resolved):
        allowed = ", ".join(logged_names(resolved))
        raise ConfigError("objective.metric", f"{job.objective.metric!r} is not logged", allowed)
    _check_store()
    if args.chief or args.worker is not None:  # Keras Tuner's own chief/worker protocol
        os.environ["KERASTUNER_TUNER_ID"] = "chief" if args.chief else f"tuner{args.worker}"
        os.environ["KERASTUNER_ORACLE_IP"] = "127.0.0.1"
        os.environ["KERASTUNER_ORACLE_PORT"] = str(args.oracle_port)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    name = Path(args.tuning).stem
    try:
        _import_tensorflow_quietly()
        from tfdl.tune import search

        result = search(job, base, name=name, overwrite=args.overwrite)
    except ConfigError:
        raise
    except KeyboardInterrupt:
        print(
            "interrupted: the search and its current trial are marked KILLED; "
            "run the same command again to finish the search",
            file=sys.stderr,
        )
        return 130
    except Exception as err:  # one line here; the runs keep the traceback
        print(f"error: the search failed: {_one_line(err)}", file=sys.stderr)
        return 1
    if result is not None:
        best = f"best {job.objective.metric} {result.best_score:.4f}"
        print(f"search {name} (run {result.parent_id}): {best}")
        print(f"best values: {result.best_values}")
    return 0


def _lr_find(args) -> int:
    from tfdl.compile import prepare
    from tfdl.config import load_pipeline

    if not 0 < args.min_lr < args.max_lr:
        problem = f"the sweep must go up from a positive rate, got {args.min_lr} to {args.max_lr}"
        raise ConfigError("--min-lr", problem, "0 < --min-lr < --max-lr")
    if args.steps < 10:
        raise ConfigError("--steps", f"{args.steps} is too few to see a trend", ">= 10")
    cfg = load_pipeline(args.pipeline, args.overrides)
    prepared = prepare(cfg)
    _check_store()
    _import_tensorflow_quietly()
    from tfdl.lr_find import lr_find

    sweep = lr_find(
        cfg, min_lr=args.min_lr, max_lr=args.max_lr, steps=args.steps, prepared=prepared
    )
    lo, hi = sweep.lrs[0], sweep.lrs[-1]
    print(f"run {sweep.run_id}: swept {len(sweep.lrs)} rates from {lo:.2g} to {hi:.2g}")
    print(f"suggested learning rate: {sweep.suggestion:.3g}")
    print(f"set it with train.optimizer.learning_rate={sweep.suggestion:.3g}")
    return 0


def _compare(args) -> int:
    from tfdl.compare import compare, curves_plot, render
    from tfdl.store import STORE, artifact_root, tracking_uri

    table, curves = compare(args.experiment, args.metric, args.filter)
    metric = next(c for c in table if c.startswith("final_")).removeprefix("final_")
    print(render(table, args.format))
    root = artifact_root(tracking_uri())
    default = (root.parent if root else STORE) / "compare" / f"{metric}.png"
    path = curves_plot(curves, metric, Path(args.plot or default))
    print(f"learning curves ({metric}): {path}", file=sys.stderr)
    return 0


def _evaluate(args) -> int:
    from tfdl.compile import prepare
    from tfdl.tracking import find_run, resolved_config

    run = find_run(args.run_id)
    cfg, splits = prepare(resolved_config(run))  # the run's data, split as it was
    _import_tensorflow_quietly()
    from tfdl.inference import evaluate
    from tfdl.tracking import load_model

    metrics = evaluate(load_model(run), cfg, splits, args.split)
    for name, value in metrics.items():
        print(f"{args.split}_{name}\t{value:.6g}")
    return 0


def _predict(args) -> int:
    from tfdl.data.spec import DataSpec
    from tfdl.inference import predictions_frame, read_inputs
    from tfdl.tracking import find_run, load_spec

    run = find_run(args.run_id)
    spec_dict, normaliser = load_spec(run)
    spec = DataSpec.from_dict(spec_dict)
    x = read_inputs(args.input, spec)  # a wrong file is reported before TensorFlow loads
    _import_tensorflow_quietly()
    from tfdl.data.split import apply_normaliser
    from tfdl.tracking import load_model

    model = load_model(run)
    frame = predictions_frame(model.predict(apply_normaliser(x, normaliser), verbose=0), spec)
    if args.output:
        frame.to_csv(args.output, index=False)
        print(f"wrote {len(frame)} predictions to {args.output}")
    else:
        print(frame.to_csv(index=False), end="")
    return 0


def _generate(args) -> int:
    if args.length <= 0:
        raise ConfigError("--length", f"{args.length} is out of range", "> 0")
    if not args.temperature > 0:
        raise ConfigError("--temperature", f"{args.temperature} is out of range", "> 0")
    from tfdl.models.schema import ARCHITECTURES
    from tfdl.tracking import find_run, load_model, load_spec

    run = find_run(args.run_id)  # a wrong id is reported before TensorFlow loads
    arch = run.data.params.get("model.arch")
    if arch not in ARCHITECTURES or not ARCHITECTURES[arch].generator:
        able = ", ".join(n for n, c in ARCHITECTURES.items() if c.generator)
        problem = f"run {args.run_id} trained {arch}, which does not generate text"
        raise ConfigError("--run-id", problem, able)
    _import_tensorflow_quietly()
    from tfdl.data.spec import DataSpec
    from tfdl.models import get_hook

    spec, _ = load_spec(run)
    model = load_model(run)
    generator = get_hook(arch, "generator")
    text = generator(
        model,
        DataSpec.from_dict(spec),
        prompt=args.prompt,
        length=args.length,
        temperature=args.temperature,
        seed=args.seed,
    )
    print(text)
    return 0


def _list(args) -> int:
    from tfdl.config import describe
    from tfdl.data.schema import SOURCES
    from tfdl.models.schema import ARCHITECTURES

    def section(title, rows):
        print(f"{title}:")
        width = max((len(name) for name, _ in rows), default=0)
        for name, text in rows:
            print(f"  {name:<{width}}  {text}")

    def first_line(cls):
        return (cls.__doc__ or "").strip().splitlines()[0]

    section("architectures", [(n, first_line(c)) for n, c in ARCHITECTURES.items()])
    section("datasets", [(n, first_line(c)) for n, c in SOURCES.items()])
    for title, folder in (("pipelines", PIPELINES), ("search jobs", PROJECT / "tuning")):
        files = sorted(folder.glob("*.yaml"))
        section(title, [(str(f.relative_to(PROJECT)), describe(f)) for f in files])
    return 0


def _ui(args) -> int:
    from tfdl.store import STORE, tracking_uri

    uri = tracking_uri()
    cmd = [
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
    ]
    if uri.startswith("sqlite:///"):
        cmd += ["--default-artifact-root", str(STORE / "artifacts")]
    print(f"MLflow UI on http://127.0.0.1:{args.port} (store: {uri}); Ctrl-C stops it", flush=True)
    mlflow = Path(sys.executable).with_name("mlflow")
    os.execv(str(mlflow), cmd)


if __name__ == "__main__":
    sys.exit(main())
