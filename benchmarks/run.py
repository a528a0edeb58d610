"""`make bench`: every measurement, one table, and results/speed.md and .json.

python -m benchmarks.run [section ...]
sections: defaults throughput loops run_cost whole_run tuning cli memory gpu scaling
(scaling takes its sizes from TFDL_BENCH_SIZES, whole_run its repeats from
TFDL_BENCH_REPEATS).
A full run writes the results files; a partial one measures its sections again and
replaces them in the results, each section stamped with the date and commit it ran at.
"""

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = (
    "defaults",
    "throughput",
    "loops",
    "run_cost",
    "whole_run",
    "tuning",
    "cli",
    "memory",
    "gpu",
    "scaling",
)
GOALS = {  # the targets, each as (description, test on the measured value)
    "tfdl/naive": ("tfdl >= naive Keras", lambda r: r >= 1.0),
    "tfdl/limit": ("tfdl within 10% of the in-memory limit", lambda r: r >= 0.9),
    "tracking_overhead": ("tracking <= 2% of epoch time", lambda r: r <= 0.02),
    "extra_s_per_trial": ("<= 0.5 s extra per trial", lambda r: r <= 0.5),
    "tfdl/plain": ("tfdl's whole run <= the plain Keras script's", lambda r: r <= 1.0),
    "tfdl/autolog": ("tfdl's whole run <= half the autolog script's", lambda r: r <= 0.5),
    "cli": ("< 1 s", lambda r: r < 1.0),
    "search_growth": ("RSS at trial 30 within 10% of trial 5", lambda r: r <= 1.10),
    "scaling_flatness": ("samples/s within 20% across sizes", lambda r: r <= 1.2),
    # `cache: none` holds none of the data: the budget is in benchmarks/scaling.py.
    "scaling_rss": ("RSS growth within budget", lambda r: r <= 1.0),
}


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    from benchmarks.gpu import gpu_name

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": gpu_name(),
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        **{lib: version(lib) for lib in ("tensorflow", "keras", "keras-tuner", "mlflow", "numpy")},
    }


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "tfdl", "benchmarks"])
    return out.stdout.strip() + ("+changes" if dirty.returncode else "")


def spawned(module: str, *args: str) -> tuple[dict, float]:
    """`python -m module *args` in a fresh process: the JSON of its last line of output,
    and the seconds from spawning it to its exit."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1]), seconds


def isolated(section: str, *args: str):
    """One measurement in a fresh process, as `tfdl train` runs: TensorFlow keeps every
    graph a process traced (about 6 MiB a model, see the memory section), and a heap grown
    by earlier measurements makes Python's collector, and every later one, slower."""
    return spawned("benchmarks.run", "--child", section, *args)[0]


def child(section: str, *args: str):
    from benchmarks import defaults, loops, scaling, throughput, tuning

    match section:
        case "defaults":
            return defaults.sweep(args[0])
        case "throughput":
            return throughput.measure(args[0], throughput.MODELS[args[0]])
        case "loops":
            return loops.measure(args[0], throughput.MODELS[args[0]])
        case "tuning":
            return tuning.measure()
        case "scaling":
            return scaling.measure(*args)
    raise ValueError(section)


def run(sections) -> dict:
    from benchmarks import cli, gpu, memory, run_cost, scaling, whole_run
    from benchmarks.throughput import MODELS

    out = {"machine": machine()}
    if "defaults" in sections:
        out["defaults"] = {name: isolated("defaults", name) for name in MODELS}
    if "throughput" in sections:
        out["throughput"] = [isolated("throughput", name) for name in MODELS]
    if "loops" in sections:
        out["loops"] = [isolated("loops", name) for name in MODELS]
    if "run_cost" in sections:
        out["run_cost"] = run_cost.measure()
    if "whole_run" in sections:
        out["whole_run"] = whole_run.measure()
    if "tuning" in sections:
        out["tuning"] = isolated("tuning")
    if "cli" in sections:
        out["cli"] = cli.measure()
    if "memory" in sections:
        rss, plain = memory.search_rss(), memory.plain_loop_rss()
        alone = memory.search_rss(overrides=["worker_trials=null"])
        out["memory"] = {
            "peak_rss_mib": {p.stem: memory.peak_rss(p) for p in memory.pipelines()},
            "search_rss_mib": rss,
            "search_growth": rss[30] / rss[5],
            "one_process_rss_mib": alone,
            "one_process_growth": alone[30] / alone[5],
            "plain_loop_rss_mib": plain,
            "plain_loop_growth": plain[30] / plain[5],
            # MiB per trial from trial 5 on: one process's search against plain Keras's
            "search_mib_per_trial": (alone[30] - alone[5]) / 25,
            "plain_loop_mib_per_round": (plain[30] - plain[5]) / 25,
        }
    if "gpu" in sections:
        out["gpu"] = gpu.measure() if out["machine"]["gpu"] else "skipped: no GPU on this machine"
    if "scaling" in sections:
        out["scaling"] = scaling.run(isolated)
    stamp = {"date": out["machine"]["date"], "commit": commit()}
    out["measured"] = {section: stamp for section in sections}
    return out


def merged(old: dict, new: dict) -> dict:
    """The earlier results with the sections measured again replaced."""
    out = old | {k: v for k, v in new.items() if k != "measured"}
    out["measured"] = old.get("measured", {}) | new["measured"]
    for key in ("search_rss_mib", "one_process_rss_mib", "plain_loop_rss_mib"):  # JSON keys: str
        if key in out.get("memory", {}):
            out["memory"][key] = {int(k): v for k, v in out["memory"][key].items()}
    return out


def verdict(key, value) -> str:
    goal, ok = GOALS[key]
    return f"{'met' if ok(value) else 'MISSED'} ({goal})"


def mark(key, value) -> str:
    """A table cell's short verdict on a goal of GOALS."""
    return "ok" if GOALS[key][1](value) else "MISSED"


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [
        "# tfdl benchmarks",
        "",
        f"{m['date']}, {m['cpu']}, {m['cores']} cores, GPU: {m['gpu'] or 'none'}; "
        f"Python {m['python']}, TensorFlow {m['tensorflow']}, Keras {m['keras']}, "
        f"Keras Tuner {m['keras-tuner']}, MLflow {m['mlflow']}, NumPy {m['numpy']}.",
        "Every ratio is measured side by side in one run, repeat by repeat; medians quoted.",
        "Measured: "
        + "; ".join(f"{k} {v['date']} at {v['commit']}" for k, v in r["measured"].items())
        + ".",
    ]
    if "throughput" in r:
        lines += [
            "",
            "## Training throughput (samples/s, steady state after the first epoch)",
            "",
            "| model | tfdl | naive Keras | in-memory limit | tfdl/naive | tfdl/limit "
            "| untracked: held | untracked: tf.data | held/tf.data "
            "| limit fed by tf.data | fed/limit |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for t in r["throughput"]:
            lines.append(
                f"| {t['model']} | {t['tfdl']:.0f} | {t['naive']:.0f} | {t['limit']:.0f} "
                f"| {t['tfdl/naive']:.2f} {mark('tfdl/naive', t['tfdl/naive'])} "
                f"| {t['tfdl/limit']:.2f} {mark('tfdl/limit', t['tfdl/limit'])} "
                f"| {t['untracked']:.0f} | {t['tf_data']:.0f} | {t['held/tf_data']:.2f} "
                f"| {t['fed']:.0f} | {t['fed/limit']:.2f} |"
            )
        lines += [
            "",
            "tfdl: a tracked `tfdl train`. tfdl/limit: tfdl's training loop (untracked, as "
            "the tracking overhead has its own goal below) against the limit, paired epoch "
            "by epoch: an epoch of the limit runs after each epoch of tfdl, and the median "
            "of the pairs' ratios is quoted, since this machine's speed drifts by 10-30% "
            "over seconds. tfdl holds a split in memory and gathers each batch inside the "
            "compiled call (`train.input: auto`, tfdl/resident.py); untracked, held against "
            "the same run reading the split through tf.data (`train.input: tf_data`). The "
            "limit fed by tf.data is the limit's own loop reading each batch from tfdl's "
            "training stream: fed/limit is what reading through tf.data costs at all.",
        ]
        lines += [
            "",
            "## Tracking overhead (MLflow on vs off, same run otherwise)",
            "",
            "| model | epoch s, tracked | epoch s, untracked | tracked/untracked - 1 "
            "| waited for in the loop | writer's CPU | tracking's cost per epoch "
            "| end of run s (test, model, plots) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for t in r["throughput"]:
            overhead, waited = t["tracking_overhead"], t["logging_in_loop"]
            wall = t.get("epoch_wall_ratio", t["tracking_overhead"])
            lines.append(
                f"| {t['model']} | {t['epoch_tracked']:.3f} | {t['epoch_untracked']:.3f} "
                f"| {wall:+.1%} | {waited:+.1%} | {overhead - waited:+.1%} "
                f"| {overhead:+.1%} {mark('tracking_overhead', overhead)} "
                f"| {t['end_of_run_s']:.1f} |"
            )
        lines += [
            "",
            "Epochs: the median over repeats of the mean whole epoch (training, validation, "
            "every callback, the backup included in both; the epochs after the first), "
            "tracked against untracked, paired repeat by repeat: on this machine these "
            "spread by +-10% from run to run, five times the goal, so the goal (<= 2%) is "
            "judged on what tracking takes from an epoch, accounted: the time the training "
            "loop waits in the logging calls plus the CPU time the writer thread spends "
            "storing the epochs (thread CPU time, which the machine's load does not "
            "inflate); in the background it competes with the training for the cores, so "
            "it delays the epoch by at most as much. Per-epoch shares of the untracked "
            "epoch. Metrics are written, and backups taken, at most every 0.25 s: on short "
            "epochs their cost falls on one epoch in several.",
        ]
    if "loops" in r:
        lines += [
            "",
            "## The lecture's loop (`train.loop: custom`) against model.fit (samples/s)",
            "",
            "| model | fit | custom | custom/fit |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {t['model']} | {t['fit']:.0f} | {t['custom']:.0f} | {t['custom/fit']:.2f} |"
            for t in r["loops"]
        ]
        lines += [
            "",
            "Untracked, the same callback stack, alternated repeat by repeat. The custom loop "
            "runs one compiled step per batch, with the batch callbacks between steps; fit "
            "runs up to steps_per_execution batches per call.",
        ]
    if "run_cost" in r:
        c = r["run_cost"]
        lines += [
            "",
            "## A whole `tfdl train`, process start to exit",
            "",
            f"`tfdl.train` of {c['pipeline']} ({', '.join(c['overrides'])}) in a fresh "
            f"process: {c['process_s']:.1f} s, median of {c['repeats']} processes (each "
            "phase its own median, so the rows need not add up exactly).",
            "",
            "| phase | s | share |",
            "|---|---|---|",
        ]
        lines += [
            f"| {k} | {v:.2f} | {v / c['process_s']:.0%} |" for k, v in c["breakdown_s"].items()
        ]
        lines += [
            "",
            "Imports timed first in the process; each phase by a timer around the function "
            "that does it (no profiler, which would inflate the Python-heavy phases).",
        ]
    if "whole_run" in r:
        w = r["whole_run"]
        lines += [
            "",
            "## A whole run against the scripts a user would write",
            "",
            f"The digits MLP of {w['pipeline']}, {w['epochs']} epochs (none cut short, a "
            "constant learning rate), each way a fresh process from spawn to exit: the "
            "`tfdl train` CLI (its MLflow run, pictures and model as shipped), "
            "`benchmarks/plain_digits.py` (plain Keras, untracked) and "
            "`benchmarks/autolog_digits.py` (the same script with "
            "`mlflow.tensorflow.autolog()`). Alternated, median of "
            f"{w['repeats']} processes each, after one untimed round that creates the "
            "stores.",
            "",
            "| way | s, median | each repeat, s |",
            "|---|---|---|",
        ]
        lines += [
            f"| {way} | {s:.1f} | " + ", ".join(f"{run[way]:.1f}" for run in w["runs_s"]) + " |"
            for way, s in w["median_s"].items()
        ]
        lines += [""] + [
            f"- {key}: {w[key]:.2f} (median of each repeat's ratio), {verdict(key, w[key])}."
            for key in ("tfdl/plain", "tfdl/autolog")
        ]
    if "defaults" in r:
        lines += ["", "## Defaults: samples/s relative to steps_per_execution=1, no XLA", ""]
        keys = [k for k in next(iter(r["defaults"].values())) if k != "base samples/s"]
        lines += ["| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for name, row in r["defaults"].items():
            lines.append(f"| {name} | " + " | ".join(f"{row[k]:.2f}" for k in keys) + " |")
    if "tuning" in r:
        t = r["tuning"]
        lines += [
            "",
            "## Tuning overhead",
            "",
            f"{t['job']}, {t['trials']} trials of {t['epochs']} epochs: "
            f"{t['extra_s_per_trial']:.2f} s extra per trial against plain build + fit, "
            f"child run included: {verdict('extra_s_per_trial', t['extra_s_per_trial'])}. "
            "Against the same loop with the heap frozen as the search freezes it (so only "
            f"Keras Tuner and MLflow differ): {t['machinery_s_per_trial']:.2f} s per trial, "
            f"{verdict('extra_s_per_trial', t['machinery_s_per_trial'])}. "
            f"Once per search, after its trials: {t['end_of_search_s']:.1f} s to log the "
            "results table, plot and best model.",
        ]
    if "cli" in r:
        lines += ["", "## CLI latency (fresh process each, median)", ""]
        lines += [f"- `{k}`: {v:.2f} s, {verdict('cli', v)}" for k, v in r["cli"].items()]
    if "memory" in r:
        mem = r["memory"]
        lines += ["", "## Memory", "", "| pipeline (2 epochs) | peak RSS MiB |", "|---|---|"]
        lines += [
            f"| {k} | {v:.0f} |" if isinstance(v, float) else f"| {k} | not run: {v} |"
            for k, v in mem["peak_rss_mib"].items()
        ]
        rss = mem["search_rss_mib"]
        lines += [
            "",
            f"30-trial search (`worker_trials: 10`, the default: the trials' process replaced "
            f"every 10): RSS of the process running the trial {rss[5]:.0f} MiB at trial 5, "
            f"{rss[30]:.0f} MiB at trial 30 (x{mem['search_growth']:.3f}): "
            f"{verdict('search_growth', mem['search_growth'])}.",
        ]
        if "one_process_rss_mib" in mem:
            alone = mem["one_process_rss_mib"]
            lines += [
                "",
                f"The same search in one process (`worker_trials=null`): {alone[5]:.0f} MiB "
                f"at trial 5, {alone[30]:.0f} MiB at trial 30 "
                f"(x{mem['one_process_growth']:.3f}).",
            ]
        lines += [
            "",
            f"Side by side, the same job's pipeline model built and fitted 30 times by plain "
            f"Keras (build, fit, clear_session, gc.collect): "
            f"{mem['plain_loop_rss_mib'][5]:.0f} MiB at round 5, "
            f"{mem['plain_loop_rss_mib'][30]:.0f} MiB at round 30 "
            f"(x{mem['plain_loop_growth']:.3f}). Growth from 5 to 30: "
            f"{mem['search_mib_per_trial']:.1f} MiB per trial in one process's search, "
            f"{mem['plain_loop_mib_per_round']:.1f} MiB per round in plain Keras.",
        ]
    if "gpu" in r:
        lines += ["", "## GPU: mixed precision and XLA", ""]
        if isinstance(r["gpu"], str):
            lines.append(r["gpu"] + ".")
        else:
            lines += [f"- {k}: {v:.0f} samples/s" for k, v in r["gpu"].items()]
    if "scaling" in r:
        from benchmarks.scaling import NOISE_MIB

        lines += [
            "",
            "## Scaling with the data (fresh process per point, cache: none)",
            "",
            "| source | size | samples/s | 1st epoch samples/s | peak RSS MiB "
            "| at end of fit MiB |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {t['source']} | {t['size']} | {t['samples_s']:.0f} "
            f"| {t['first_epoch_samples_s']:.0f} | {t['peak_rss_mib']:.0f} "
            f"| {t['fit_peak_rss_mib']:.0f} |"
            for t in r["scaling"]["points"]
        ]
        lines += [
            "",
            "samples/s: the training loop, median over the epochs after the first; the "
            "first also traces and compiles. Peak RSS: the whole run (load, fit, test, "
            "pictures, MLflow). RSS budget: 10% of the largest data set decoded (float32), "
            f"at least {NOISE_MIB} MiB of run-to-run noise.",
            "",
        ]
        for source, s in r["scaling"]["summary"].items():
            small, large = s["sizes"]
            lines.append(
                f"- {source}, {small} to {large} samples: samples/s max/min "
                f"x{s['flatness']:.2f}, {verdict('scaling_flatness', s['flatness'])}; "
                f"peak RSS {s['rss_growth_mib']:+.0f} MiB (budget {s['rss_budget_mib']:.0f} "
                f"MiB, the data decoded {s['data_mib']:.0f} MiB), "
                f"{verdict('scaling_rss', s['rss_growth/budget'])}."
            )
    lines += ["", "Why the defaults are what they are, and why a goal is missed: analysis.md."]
    return "\n".join(lines) + "\n"


def main(argv):
    if argv[:1] == ["--child"]:  # one measurement of `isolated`, its result as JSON
        print(json.dumps(child(*argv[1:])))
        return
    sections = argv or SECTIONS
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        sys.exit(f"error: sections: unknown {sorted(unknown)}; allowed: {', '.join(SECTIONS)}")
    # Runs of the benchmark go to a store of their own, never into the project's runs.
    with tempfile.TemporaryDirectory() as store:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
        results = run(sections)
    previous = RESULTS / "speed.json"
    if set(sections) != set(SECTIONS) and previous.exists():
        results = merged(json.loads(previous.read_text()), results)
    text = markdown(results)
    print(text)
    if set(sections) == set(SECTIONS) or previous.exists():
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "speed.md").write_text(text)
        previous.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
