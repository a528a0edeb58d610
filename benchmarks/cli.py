"""CLI latency: each command in a fresh process, as a user types it."""

import subprocess
import sys
import time

from benchmarks.clock import median

COMMANDS = {
    "tfdl --help": ["--help"],
    "tfdl list": ["list"],
    "config error": ["train", "pipelines/mlp.yaml", "train.epochs=0"],
}


def latency(args, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tfdl.cli", *args], capture_output=True)
        times.append(time.perf_counter() - start)
    return median(times)


def measure(repeats=7):
    return {name: latency(args, repeats) for name, args in COMMANDS.items()}


if __name__ == "__main__":
    print(measure())
