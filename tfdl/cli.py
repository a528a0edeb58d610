"""The `tfdl` command: the only module that knows flag names. TensorFlow is imported only
once a command's input has passed.

Every command runs inside one guard: bad input is one line on stderr,
`error: <field>: <problem>; allowed: ...`, exit code 2; Ctrl-C or SIGTERM exit 130; a
crash exits 1 with one line naming the run marked FAILED or where its traceback is.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import re
import signal
import sys
from pathlib import Path

from tfdl.errors import ConfigError
from tfdl.search_workers import MAX_WORKERS
from tfdl.signals import forget_caught_interrupt, lost_interrupts_raised
from tfdl.store import PROJECT

PIPELINES = PROJECT / "pipelines"
ORACLE_PORT = 8000  # Keras Tuner's chief, started by hand (tfdl tune --chief / --worker)


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors in the project's one-line form. A command's
    positionals may come before, between or after its options (`tfdl train FILE --workers
    ... --worker-index 0 train.epochs=3`): plain argparse takes them in one run only."""

    _intermixing = False

    def error(self, message):
        raise ConfigError(self.prog, message, "see `tfdl --help`")

    def parse_known_args(self, args=None, namespace=None):
        if self._subparsers is not None or self._intermixing:  # `tfdl` itself, or within
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="tfdl",
        description="Train, track and compare the models of an introductory deep-learning course.",
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p.commands = sub  # the guard names a setting by its command's flag

    t = sub.add_parser("train", help="train a pipeline and record it in MLflow")
    t.add_argument("pipeline", nargs="?", help="a pipeline YAML file, e.g. pipelines/mlp.yaml")
    t.add_argument(
        "--resume", metavar="RUN_ID", help="continue an interrupted run from its last epoch"
    )
    t.add_argument(
        "overrides", nargs="*", help="dotted.path=value, e.g. train.epochs=3 model.units=[64,32]"
    )
    t.add_argument(
        "--workers",
        metavar="HOST:PORT,...",
        help="train.distribution=multi_worker: every worker's address, worker 0 the chief",
    )
    t.add_argument(
        "--worker-index", type=int, metavar="I", help="which of --workers this process is"
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
    role.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="start a chief and N workers on 127.0.0.1 (one GPU each when there are GPUs)",
    )
    k.add_argument(
        "--oracle-port",
        type=int,
        help=f"the chief's port on 127.0.0.1 (default: {ORACLE_PORT}; with --workers a free one)",
    )

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

    r = sub.add_parser("runs", help="the runs with their status and age; which are stale")
    r.add_argument("--experiment", action="append", help="an experiment name (repeatable)")
    r.add_argument("--status", choices=("RUNNING", "FINISHED", "FAILED", "KILLED", "SCHEDULED"))
    r.add_argument(
        "--mark-stale", action="store_true", help="end the stale RUNNING runs KILLED, with why"
    )
    r.add_argument(
        "--upload", action="store_true", help="send what runs kept while the server was away"
    )

    e = sub.add_parser("evaluate", help="metrics of a logged model on a split of its data")
    _model_source(e)
    e.add_argument("--split", choices=("train", "val", "test"), default="test")

    d = sub.add_parser("predict", help="predictions of a logged model for new inputs")
    _model_source(d)
    d.add_argument(
        "--input",
        required=True,
        help="a .csv (the training columns) or .npy file; image or .txt files (a file or folder)",
    )
    d.add_argument("--output", help="a CSV file to write (default: standard output)")

    s = sub.add_parser("serve", help="serve a logged model over HTTP on 127.0.0.1")
    _model_source(s)
    s.add_argument("--port", type=int, default=5001, help="on 127.0.0.1 (default: 5001)")

    x = sub.add_parser("export", help="write a logged model as a TensorFlow SavedModel")
    _model_source(x)
    x.add_argument("--output", required=True, help="a new or empty folder")

    g = sub.add_parser("generate", help="text from a logged language or seq2seq model")
    g.add_argument("--run-id", required=True, help="the MLflow run that trained the model")
    g.add_argument("--prompt", default="", help="text to start from (seq2seq: the input)")
    g.add_argument("--length", type=int, default=300, help="characters to generate")
    g.add_argument("--temperature", type=float, default=1.0, help="sampling temperature > 0")
    g.add_argument("--seed", type=int, default=0, help="seed of the sampler")

    m = sub.add_parser("make-example-data", help="write an example data set to try a source on")
    m.add_argument("kind", choices=("shapes",), help="shapes: an image folder of 3 classes")
    m.add_argument("folder", help="a new or empty folder to write it into")
    m.add_argument("--per-class", type=int, default=200, help="pictures per class")
    m.add_argument("--size", type=int, default=64, help="pixels along a side (8 to 1024)")
    m.add_argument("--seed", type=int, default=0, help="the same seed writes the same files")

    u = sub.add_parser("ui", help="open the MLflow UI over the project store on 127.0.0.1")
    u.add_argument("--port", type=int, default=5000)
    return p


def _model_source(command: argparse.ArgumentParser) -> None:
    """--run-id or --model: the model a run logged, or a version of the model registry."""
    command.add_argument("--run-id", help="the MLflow run that trained the model")
    command.add_argument(
        "--model", metavar="NAME@ALIAS", help="a registered model: NAME@ALIAS or NAME/VERSION"
    )


# The numeric options' ranges, by the setting they set (argparse only checks the type).
LIMITS = {
    "port": (1, 65535),
    "oracle_port": (1, 65535),
    "worker": (0, 65535),
    "workers": (1, MAX_WORKERS),
    "seed": (0, 2**32 - 1),
    "length": (1, 1_000_000),
    "steps": (2, 1_000_000),
    "per_class": (1, 1_000_000),
}


def _check_numbers(args, flags: dict[str, str]) -> None:
    """Numbers that parse but cannot work: out of their range, or not finite."""
    for name, value in vars(args).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(flags.get(name, name), f"{value} is not finite", "a finite number")
        low, high = LIMITS.get(name, (None, None))
        if isinstance(value, int) and low is not None and not low <= value <= high:
            raise ConfigError(flags.get(name, name), f"{value} is out of range", f"{low} to {high}")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        _check_numbers(args, _flags(parser, args.command))
    except ConfigError as err:
        print(err.line(), file=sys.stderr)
        return 2
    commands = {
        "train": _train,
        "lr-find": _lr_find,
        "tune": _tune,
        "list": _list,
        "generate": _generate,
        "evaluate": _evaluate,
        "compare": _compare,
        "runs": _runs,
        "predict": _predict,
        "serve": _serve,
        "export": _export,
        "ui": _ui,
        "make-example-data": _make_example_data,
    }

    def work():
        if args.command in READ_RUNS:  # a store that cannot answer: one line, not a hang
            from tfdl.store import check_reachable

            check_reachable()
        return commands[args.command](args)

    return guarded(args.command, work, _flags(parser, args.command))


# Commands that read runs from the store (train, tune and lr-find check it as they start).
READ_RUNS = ("generate", "evaluate", "compare", "runs", "predict", "serve", "export")


# ------------------------------------------------------------------------------ the guard

# What the command was doing, for its one line when it crashes.
DOING = {"train": "training", "tune": "the search", "lr-find": "the learning-rate sweep"}
# What to do after an interrupt, by command ({run} is the killed run).
AFTER_INTERRUPT = {
    "train": "continue it with tfdl train --resume {run}",
    "tune": "run the same command again to finish the search",
    "lr-find": "run the sweep again",
}
KINDS = {"search": "the search", "trial": "its current trial"}


def guarded(command: str, work, flags: dict[str, str] | None = None) -> int:
    """Run one command: bad input is its one-line error and exit 2; Ctrl-C or SIGTERM
    exit 130 (the run in progress is marked KILLED by its lifecycle); a crash exits 1
    with one line naming the run marked FAILED or the file holding the traceback."""
    # SIGTERM ends a command like Ctrl-C: its run is marked KILLED, never left RUNNING.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    seen = len(_endings())
    try:
        with lost_interrupts_raised():
            return work()
    except ConfigError as err:
        print(_flagged(err, flags or {}).line(), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(_interrupted(command, _endings()[seen:]), file=sys.stderr)
        return 130
    except Exception as err:  # one line here; the run (or a file) keeps the traceback
        print(_crashed(command, err, _endings()[seen:]), file=sys.stderr)
        return 1


def _endings():
    """The runs this process ended (none if it never loaded the tracking layer)."""
    if "tfdl.tracking.lifecycle" not in sys.modules:
        return []
    return sys.modules["tfdl.tracking.lifecycle"].endings()


def _flags(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """The arguments of `command` by the setting they set, as its usage line spells them:
    {"run_id": "--run-id", "pipeline": "tfdl train PIPELINE", ...}."""
    actions = parser.commands.choices[command]._actions
    return {
        a.dest: a.option_strings[-1] if a.option_strings else f"tfdl {command} {a.dest.upper()}"
        for a in actions
        if a.dest != "help"
    }


def _flagged(err: ConfigError, flags: dict[str, str]) -> ConfigError:
    """The error with its settings named as the command line spells them."""
    allowed = err.allowed
    for name in err.settings:
        if allowed and name in flags:
            allowed = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", flags[name], allowed)
    return ConfigError(flags.get(err.field, err.field), err.problem, allowed)


def _interrupted(command: str, ended) -> str:
    killed = [e for e in ended if e.status == "KILLED"]
    if not killed:
        return "interrupted before a run started: nothing was recorded"
    hint = AFTER_INTERRUPT.get(command, "").format(run=killed[-1].run_id)
    if {e.kind for e in killed} <= {"search", "trial"}:
        # A search's workers each had a trial under way: "its 2 current trials".
        counts = {kind: sum(e.kind == kind for e in killed) for kind in KINDS}
        what = " and ".join(
            KINDS[kind] if n == 1 else f"its {n} current trials" for kind, n in counts.items() if n
        )
        return f"interrupted: {what} {'are' if len(killed) > 1 else 'is'} marked KILLED; {hint}"
    runs = ", ".join(f"run {e.run_id}" for e in killed)
    line = f"interrupted: {runs} {'are' if len(killed) > 1 else 'is'} marked KILLED"
    return f"{line}; {hint}" if hint else line


def _crashed(command: str, err: Exception, ended) -> str:
    failed = [e for e in ended if e.status == "FAILED"]
    doing = DOING.get(command, f"tfdl {command}")
    if isinstance(err, FloatingPointError):  # the loss diverged: a result, not a bug
        run = f"run {failed[-1].run_id}" if failed else "the run"
        return f"error: {doing} diverged: {err}; {run} is marked FAILED"
    line = f"error: {doing} failed: {_one_line(err)}"
    if failed and failed[-1].traceback_saved:
        return f"{line}; run {failed[-1].run_id} is marked FAILED, its error.txt has the traceback"
    where = f"; run {failed[-1].run_id} is marked FAILED" if failed else ""
    saved = _save_traceback(command)
    return f"{line}{where}; {f'traceback in {saved}' if saved else 'the traceback was not saved'}"


def _save_traceback(command: str) -> str | None:
    """The traceback of the exception being handled, in a file of its own; None if even
    that cannot be written (a full disk)."""
    import tempfile
    import traceback

    try:
        with tempfile.NamedTemporaryFile(
            "w", prefix=f"tfdl-{command}-", suffix=".txt", delete=False
        ) as file:
            file.write(traceback.format_exc())
        return file.name
    except OSError:
        return None


def _one_line(err: Exception) -> str:
    """`Type: message` on one line; a long message (e.g. with a traceback in it) keeps its
    first and last lines."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if len(lines) > 1:
        text += f" ... {lines[-1]}"
    return f"{type(err).__name__}: {text}"


# ----------------------------------------------------------------------------- commands


def _train(args) -> int:
    import tfdl

    result = tfdl.train(
        args.pipeline,
        args.overrides,
        resume=args.resume,
        workers=args.workers,
        worker_index=args.worker_index,
    )
    metrics = ", ".join(f"test_{k}={v:.4f}" for k, v in result.test_metrics.items())
    if result.run_id is None:  # a multi_worker worker other than the chief
        print(f"worker {args.worker_index} finished: {metrics}; worker 0 recorded the run")
        return 0
    print(f"run {result.run_id} finished: {metrics}")
    if result.model_version:
        name = f"{result.registered_model}/{result.model_version}"
        print(f"registered as {name}: serve it with tfdl serve --model {name}")
    print("compare runs with `make ui`")
    return 0


def _tune(args) -> int:
    import tfdl
    from tfdl.search_workers import Interrupted

    if args.chief or args.worker is not None:  # Keras Tuner's own chief/worker protocol
        os.environ["KERASTUNER_TUNER_ID"] = "chief" if args.chief else f"tuner{args.worker}"
        os.environ["KERASTUNER_ORACLE_IP"] = "127.0.0.1"
        os.environ["KERASTUNER_ORACLE_PORT"] = str(args.oracle_port or ORACLE_PORT)
    seen = len(_endings())
    try:  # the trials may run in child processes (the job's worker_trials, or --workers)
        result = tfdl.tune(
            args.tuning,
            args.overrides,
            overwrite=args.overwrite,
            workers=args.workers,
            oracle_port=args.oracle_port,
        )
    except Interrupted as stop:  # the line names the runs the children ended too
        print(_interrupted("tune", [*stop.ended, *_endings()[seen:]]), file=sys.stderr)
        return 130
    if result is not None:
        best = f"best {result.metric} {result.best_score:.4f}"
        print(f"search {Path(args.tuning).stem} (run {result.parent_id}): {best}")
        print(f"best values: {result.best_values}")
    return 0


def _lr_find(args) -> int:
    import tfdl

    sweep = tfdl.find_learning_rate(
        args.pipeline, args.overrides, min_lr=args.min_lr, max_lr=args.max_lr, steps=args.steps
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


def _runs(args) -> int:
    from tfdl.runs import mark_stale, runs_table

    if args.upload:
        from tfdl.tracking import lifecycle, outage

        for run_id, epochs, ended in outage.upload(lifecycle.client()):
            end = f" and its end ({ended})" if ended else ""
            print(f"run {run_id}: sent {epochs} epoch{'s' * (epochs != 1)}{end}")
    table = runs_table(args.experiment, args.status)
    print(table.to_string(index=False) if len(table) else "no runs")
    if args.mark_stale:
        ended = mark_stale(table)
        for run_id, kind, why in ended:
            hint = f"; continue it with tfdl train --resume {run_id}" if kind == "training" else ""
            print(f"run {run_id} marked KILLED ({why}){hint}")
        print(f"{len(ended)} stale run{'s' * (len(ended) != 1)} marked KILLED")
    elif (table["state"] == "stale").any():
        print("stale runs: their process is gone; end them with tfdl runs --mark-stale")
    return 0


def _source(args):
    """(run, model URI, setting) of the model named by --run-id or --model: the run holds
    the config and data spec the model was trained with."""
    if (args.run_id is None) == (args.model is None):
        raise ConfigError(
            f"tfdl {args.command}",
            "takes --run-id or --model, not both" if args.run_id else "needs --run-id or --model",
            "--run-id RUN_ID, --model NAME@ALIAS or --model NAME/VERSION",
        )
    from tfdl.tracking import find_model, find_run, run_model_uri

    if args.model is not None:
        return *find_model(args.model), "model"
    run = find_run(args.run_id)
    return run, run_model_uri(run), "run_id"


def _evaluate(args) -> int:
    from tfdl.prepared import prepare
    from tfdl.runtime import import_tensorflow
    from tfdl.tracking import resolved_config

    run, uri, field = _source(args)
    p = prepare(resolved_config(run, field))  # the run's data, split as it was
    import_tensorflow()
    from tfdl.inference import evaluate
    from tfdl.tracking import load_model

    for name, value in evaluate(load_model(run, uri, field), p, args.split).items():
        print(f"{args.split}_{name}\t{value:.6g}")
    return 0


def _predict(args) -> int:
    from tfdl.data.spec import DataSpec
    from tfdl.inference import predictions_frame, read_inputs
    from tfdl.runtime import import_tensorflow
    from tfdl.tracking import load_spec

    run, uri, field = _source(args)
    spec_dict, normaliser = load_spec(run, field)
    spec = DataSpec.from_dict(spec_dict)
    x = read_inputs(args.input, spec)  # a wrong file is reported before TensorFlow loads
    if args.output:
        _check_output(Path(args.output))
    import_tensorflow()
    from tfdl.inference import scaled_for
    from tfdl.tracking import load_model

    model = load_model(run, uri, field)
    frame = predictions_frame(model.predict(scaled_for(model, x, normaliser), verbose=0), spec)
    if args.output:
        try:
            frame.to_csv(args.output, index=False)
        except OSError as err:  # e.g. the disk filled up meanwhile
            raise ConfigError("output", f"cannot write {args.output}: {err.strerror}") from None
        print(f"wrote {len(frame)} predictions to {args.output}")
    else:
        print(frame.to_csv(index=False), end="")
    return 0


def _check_output(file: Path) -> None:
    """A file the predictions can be written to: not a folder, in a writable folder."""
    folder = file.parent
    if file.is_dir():
        raise ConfigError("output", f"{file} is a folder", "a CSV file name")
    if not folder.is_dir():
        raise ConfigError("output", f"no such folder: {folder}", "a file in an existing folder")
    if not os.access(folder, os.W_OK) or (file.exists() and not os.access(file, os.W_OK)):
        raise ConfigError("output", f"{file} is not writable", "a file in a writable folder")


# A run logged before models scaled their own inputs: its model takes scaled inputs.
SCALED_INPUTS = (
    "note: run {run} predates models that scale their own inputs: this model takes inputs "
    "scaled with the run's normaliser.json (tfdl predict applies it)"
)


def _make_example_data(args) -> int:
    from tfdl.data.shapes import make_shapes

    counts = make_shapes(args.folder, per_class=args.per_class, size=args.size, seed=args.seed)
    print(f"wrote {sum(counts.values())} pictures of {', '.join(counts)} to {args.folder}")
    print(f"train on them: tfdl train pipelines/shapes_folder.yaml data.path={args.folder}")
    return 0


def _serve(args) -> int:
    from tfdl.serving import check_port, example_payload, example_request, serve
    from tfdl.store import tracking_uri

    check_port(args.port)
    run, uri, field = _source(args)
    from tfdl.tracking import load_spec, model_inputs

    spec, normaliser = load_spec(run, field)
    payload = example_payload(model_inputs(run, uri, field), spec["input_shape"])
    url = f"http://127.0.0.1:{args.port}"
    print(f"serving {uri} (run {run.info.run_id}) on {url}; Ctrl-C stops it")
    print(f"try: {example_request(args.port, payload)}")
    if normaliser is not None and "normalizer" not in spec:  # a spec of before
        print(SCALED_INPUTS.format(run=run.info.run_id))
    sys.stdout.flush()
    try:
        code = serve(uri, args.port, tracking_uri())
    except KeyboardInterrupt:
        print(f"interrupted: the server on {url} is stopped", file=sys.stderr)
        return 130
    if code != 0:
        print(f"error: the server on {url} exited with code {code}", file=sys.stderr)
        return 1
    return 0


def _export(args) -> int:
    from tfdl.export import check_output
    from tfdl.runtime import import_tensorflow

    folder = check_output(args.output)
    run, uri, field = _source(args)
    from tfdl.tracking import load_model, load_spec

    _, normaliser = load_spec(run, field)
    import_tensorflow()
    from tfdl.export import export_saved_model, signature_line
    from tfdl.inference import scales_itself

    model = load_model(run, uri, field)
    export_saved_model(model, folder)
    print(f"wrote {uri} as a TensorFlow SavedModel to {folder}")
    print(f"load it with tf.saved_model.load({str(folder)!r}).serve(x), x: {signature_line(model)}")
    if normaliser is not None and not scales_itself(model):
        print(SCALED_INPUTS.format(run=run.info.run_id))
    return 0


def _generate(args) -> int:
    if not args.temperature > 0:
        raise ConfigError("temperature", f"{args.temperature} is out of range", "> 0")
    from tfdl.models.schema import ARCHITECTURES
    from tfdl.runtime import import_tensorflow
    from tfdl.tracking import find_run, load_model, load_spec

    run = find_run(args.run_id)  # a wrong id is reported before TensorFlow loads
    arch = run.data.params.get("model.arch")
    if arch not in ARCHITECTURES or not ARCHITECTURES[arch].generator:
        able = ", ".join(n for n, c in ARCHITECTURES.items() if c.generator)
        problem = f"run {args.run_id} trained {arch}, which does not generate text"
        raise ConfigError("run_id", problem, able)
    import_tensorflow()
    from tfdl.data.spec import DataSpec
    from tfdl.models import get_hook

    spec, _ = load_spec(run)
    generator = get_hook(arch, "generator")
    text = generator(
        load_model(run),
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
    fetched = " [downloaded once, or a local copy: data.path]"
    section("datasets", [(n, first_line(c) + fetched * c.downloads) for n, c in SOURCES.items()])
    folders = (
        ("pipelines", PIPELINES),
        ("lecture demonstrations (make lectures)", PIPELINES / "lectures"),
        ("search jobs", PROJECT / "tuning"),
    )
    for title, folder in folders:
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


def run() -> int:
    """The `tfdl` command as a process: `main`, then an exit that skips collecting the
    garbage of TensorFlow's whole heap, which the interpreter's shutdown otherwise does
    (measured: 1.7 s of a 12 s `tfdl train`; benchmarks/results/analysis.md). Everything
    the command writes is closed and stored by the time `main` returns."""
    code = main()
    forget_caught_interrupt()  # main answered: no interrupt is left unhandled
    gc.freeze()  # the collector skips every object alive now, at exit too
    if code != 0 and "tfdl.distribute" in sys.modules:
        sys.modules["tfdl.distribute"].leave(code)  # a worker of a broken cluster: now
    return code


if __name__ == "__main__":
    sys.exit(run())
