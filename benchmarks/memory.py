"""Memory: peak RSS of each shipped pipeline's run, and RSS across a long search."""

import re
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
TFDL = [sys.executable, "-m", "tfdl.cli"]
SEARCH = "tuning/mlp_random.yaml"


def _rss_mib(pid) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


# The child reports its own high-water mark as it exits: the kernel's ru_maxrss of a child
# keeps the peak of the process it was forked from (this one), whatever the child used.
_REPORT_PEAK = (
    "import atexit, re, sys; from pathlib import Path; from tfdl.cli import main; "
    "atexit.register(lambda: print(re.search(r'VmHWM:\\s+(\\d+)', "
    "Path('/proc/self/status').read_text()).group(1), file=sys.stderr)); "
    "sys.exit(main(sys.argv[1:]))"
)


def peak_rss(pipeline, epochs=2) -> float | str:
    """Peak RSS (MiB) of `tfdl train` on one pipeline, a short run of it; or, for a
    pipeline the command refuses (exit 2: e.g. its data set is not downloaded and there is
    no network), the command's one-line reason."""
    proc = subprocess.run(
        [sys.executable, "-c", _REPORT_PEAK, "train", str(pipeline), f"train.epochs={epochs}"],
        cwd=PROJECT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if proc.returncode == 2:
        line = next(line for line in proc.stderr.splitlines() if line.startswith("error:"))
        return ": ".join(line.split(": ")[:3])  # e.g. "error: data.path: mnist is not downloaded"
    if proc.returncode != 0:
        raise RuntimeError(f"{pipeline}: {proc.stderr[-500:]}")
    return int(proc.stderr.split()[-1]) / 1024


def _newest_child(pid) -> int | None:
    """The child of `pid` started last, if any: a search's trials process."""
    newest, start = None, -1
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:  # fields after the command's name: state, ppid, ..., starttime (index 19)
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid and int(fields[19]) > start:
            newest, start = int(stat.parent.name), int(fields[19])
    return newest


def _rss_by_line(cmd, pattern) -> dict[int, float]:
    """RSS (MiB) of the process that prints a line matching `pattern`, keyed by the number
    the pattern's group captures: the process `cmd`, or the child it runs trials in
    (tfdl.search_workers). A line a child prints as it hands over to the next may find
    it gone: that line has no figure, rather than another process's."""
    proc = subprocess.Popen(
        cmd, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    rss, children = {}, False
    for line in proc.stdout:
        match = re.match(pattern, line)
        if not match:
            continue
        child = _newest_child(proc.pid)
        children = children or child is not None
        if child is None and children:
            continue
        try:
            rss[int(match.group(1))] = _rss_mib(child or proc.pid)
        except (OSError, AttributeError):  # exited, or a zombie with no VmRSS
            continue
    if proc.wait() != 0:
        raise RuntimeError(f"{' '.join(cmd[2:])} failed")
    return rss


def search_rss(job=SEARCH, trials=30, epochs=1, overrides=()) -> dict[int, float]:
    """RSS (MiB) of the process running a `tfdl tune`'s trials at the end of each trial,
    by trial number: the job's worker_trials replace that process every K trials
    (`overrides=["worker_trials=null"]`: one process runs them all)."""
    settings = [f"max_trials={trials}", f"epochs={epochs}", *overrides]
    cmd = [*TFDL, "tune", job, *settings, "--overwrite"]
    return _rss_by_line(cmd, r"trial (\d+) of")  # printed by the tuner as each trial ends


def plain_loop_rss(job=SEARCH, rounds=30, epochs=1) -> dict[int, float]:
    """RSS (MiB) after each round of the loop a user writes without tfdl: build the search's
    pipeline model with Keras, fit it, `keras.backend.clear_session()` and collect garbage.
    The growth TensorFlow has of its own, to set beside the search's."""
    cmd = [sys.executable, "-m", "benchmarks.memory", "plain-loop", job, str(rounds), str(epochs)]
    return _rss_by_line(cmd, r"round (\d+)")


def _plain_loop(job, rounds, epochs):
    import gc

    import keras

    from tfdl.config import load_tuning, validate
    from tfdl.models import build_model
    from tfdl.prepared import prepare

    _, base = load_tuning(job, [f"epochs={epochs}"])
    p = prepare(validate(base))
    for k in range(1, rounds + 1):
        keras.backend.clear_session()
        gc.collect()
        model = build_model(p.cfg.model, p.spec)
        model.compile(optimizer="adam", loss=p.cfg.train.loss, metrics=["accuracy"])
        model.fit(p.dataset("train"), validation_data=p.dataset("val"), epochs=epochs, verbose=0)
        print(f"round {k}", flush=True)


def pipelines():
    return sorted((PROJECT / "pipelines").glob("*.yaml"))


if __name__ == "__main__":
    if sys.argv[1:2] == ["plain-loop"]:  # the child of plain_loop_rss
        _plain_loop(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        print({k: round(v) for k, v in plain_loop_rss(rounds=6).items()})
        print({k: round(v) for k, v in search_rss(trials=6).items()})
