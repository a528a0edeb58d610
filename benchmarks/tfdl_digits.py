"""The tfdl side of the time-to-goal comparison in benchmarks/accuracy.py: a shipped digits
pipeline trained as shipped through tfdl's Python API (its MLflow run, callback stack and
end-of-run records included), timed by the same callback as benchmarks/plain_digits.py.

    python -m benchmarks.tfdl_digits mlp|cnn [--goal 0.97] [--out FILE]
"""

import argparse

import tfdl
from benchmarks.plain_digits import TestAccuracy, report

PIPELINES = {"mlp": "pipelines/mlp.yaml", "cnn": "pipelines/cnn2d.yaml"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(PIPELINES))
    parser.add_argument("--goal", type=float, help="stop once the test accuracy reaches it")
    parser.add_argument("--out", help="write the JSON here instead of printing it")
    args = parser.parse_args(argv)

    p = tfdl.prepare(PIPELINES[args.model])
    clock = TestAccuracy(p.splits.x_test, p.splits.y_test, goal=args.goal)
    result = tfdl.train(p, callbacks=[clock])
    report({"epochs": clock.epochs, "test_accuracy": result.test_metrics["accuracy"]}, args.out)


if __name__ == "__main__":
    main()
