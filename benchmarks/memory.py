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


def peak_rss(pipeline, epochs=2) -> float:
    """Peak RSS (MiB) of `tfdl train` on one pipeline, a short run of it."""
    proc = subprocess.run(
        [sys.executable, "-c", _REPORT_PEAK, "train", str(pipeline), f"train.epochs={epochs}"],
        cwd=PROJECT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{pipeline}: {proc.stderr[-500:]}")
    return int(proc.stderr.split()[-1]) / 1024


def _rss_by_line(cmd, pattern) -> dict[int, float]:
    """RSS (MiB) of the process `cmd` each time it prints a line matching `pattern`, keyed
    by the number the pattern's group captures."""
    proc = subprocess.Popen(
        cmd, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    rss = {}
    for line in proc.stdout:
        match = re.match(pattern, line)
        if match:
            rss[int(match.group(1))] = _rss_mib(proc.pid)
    if proc.wait() != 0:
        raise RuntimeError(f"{' '.join(cmd[2:])} failed")
    return rss


def search_rss(job=SEARCH, trials=30, epochs=1) -> dict[int, float]:
    """RSS (MiB) of a `tfdl tune` process at the end of each trial, by trial number."""
    cmd = [*TFDL, "tune", job, f"max_trials={trials}", f"epochs={epochs}", "--overwrite"]
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
