"""benchmarks/plain_digits.py tracked as a user would track it without tfdl: MLflow's
autologging turned on, then the same script trains (benchmarks/whole_run.py times it).

    python -m benchmarks.autolog_digits --store DIR mlp [plain_digits' options]
    python -m benchmarks.autolog_digits --store DIR mlp --epochs 30 --no-stop

The run goes to the sqlite store DIR/mlflow.db (created if new), in the experiment
`digits-mlp-autolog` whose artifacts are kept beside the database in DIR/artifacts, as
tfdl keeps a store's. What autolog records is its defaults': parameters, each epoch's
metrics, the datasets, the model summary, the best-epoch checkpoint, the TensorBoard
logs and the trained model.
"""

import argparse
from pathlib import Path

import mlflow

from benchmarks import plain_digits

EXPERIMENT = "digits-mlp-autolog"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    parser.add_argument("--store", required=True, help="the sqlite store's folder")
    args, rest = parser.parse_known_args(argv)
    store = Path(args.store).resolve()
    store.mkdir(parents=True, exist_ok=True)

    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        mlflow.create_experiment(EXPERIMENT, artifact_location=(store / "artifacts").as_uri())
    mlflow.set_experiment(EXPERIMENT)
    mlflow.tensorflow.autolog()
    plain_digits.main(rest)


if __name__ == "__main__":
    main()
