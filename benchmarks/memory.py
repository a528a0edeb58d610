"""Memory: peak RSS of each shipped pipeline's run, and RSS across a long search."""

import re
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
TFDL = [sys.executable, "-m", "tfdl.cli"]


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


def search_rss(job="tuning/mlp_random.yaml", trials=30, epochs=1) -> dict[int, float]:
    """RSS (MiB) of a `tfdl tune` process at the end of each trial, by trial number."""
    proc = subprocess.Popen(
        [*TFDL, "tune", job, f"max_trials={trials}", f"epochs={epochs}", "--overwrite"],
        cwd=PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    rss = {}
    for line in proc.stdout:  # the tuner prints "trial K of N: ..." as each trial ends
        match = re.match(r"trial (\d+) of", line)
        if match:
            rss[int(match.group(1))] = _rss_mib(proc.pid)
    if proc.wait() != 0:
        raise RuntimeError(f"the search {job} failed")
    return rss


def pipelines():
    return sorted((PROJECT / "pipelines").glob("*.yaml"))


if __name__ == "__main__":
    for p in pipelines()[:2]:
        print(p.name, peak_rss(p))
    rss = search_rss(trials=6)
    print(rss)
