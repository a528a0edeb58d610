"""One run per kind of source through the real `tfdl train` command, each a shipped
pipeline where there is one: the run finishes, and its logged model, loaded by MLflow
alone, answers the raw inputs a user has (pixels, strings, category names)."""

import json

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from tfdl.data.shapes import make_shapes

from .conftest import PROJECT, run_tfdl
from .test_keras_datasets import write_keras_set
from .test_keras_texts import write_imdb
from .test_text_sources import reviews

pytestmark = pytest.mark.slow
QUICK = ["train.epochs=2", "train.verbose=0", "tracking.experiment=sources"]


def mnist(tmp):
    path = write_keras_set("mnist", tmp)
    pixels = np.zeros((1, 28, 28, 1), dtype="float32")
    return "mnist_cnn.yaml", [f"data.path={path}", "data.val_fraction=0.3"], pixels


def imdb(tmp):
    path = write_imdb(tmp)
    texts = np.array(["s3 a review never seen"], dtype=object)
    return (
        "imdb_lstm.yaml",
        [f"data.path={path}", "data.sequence_length=8", "model.units=[8]"],
        texts,
    )


def image_folder(tmp):
    make_shapes(tmp / "shapes", per_class=12, size=32)
    png = tmp / "shapes" / "circle" / "circle_0000.png"
    pixels = np.asarray(Image.open(png).resize((16, 16)), dtype="float32")[None]
    overrides = [f"data.path={tmp / 'shapes'}", "data.image_size=[16,16]", "model.filters=[8,8]"]
    return "shapes_folder.yaml", overrides, pixels


def text_folder(tmp):
    for i, (text, label) in enumerate(reviews(60)):
        (tmp / "reviews" / label).mkdir(parents=True, exist_ok=True)
        (tmp / "reviews" / label / f"{i}.txt").write_text(text)
    data = {"source": "text_folder", "path": str(tmp / "reviews"), "sequence_length": 10}
    return "gru.yaml", [f"data={json.dumps(data)}"], np.array(["lovely"], dtype=object)


def csv_text_streamed(tmp):
    pd.DataFrame(reviews(80), columns=["review", "label"]).to_csv(tmp / "r.csv", index=False)
    data = {"source": "csv", "path": str(tmp / "r.csv"), "target": "label", "text": "review"}
    data |= {"streaming": "on", "cache": "memory", "sequence_length": 12}  # patches of 4
    return (
        "transformer_encoder.yaml",
        [f"data={json.dumps(data)}"],
        np.array(["dull"], dtype=object),
    )


def csv_categories(tmp):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=60), "colour": rng.choice(["red", "blue"], 60)})
    frame["label"] = (frame["colour"] == "red").astype(int)
    frame.to_csv(tmp / "t.csv", index=False)
    data = {"source": "csv", "path": str(tmp / "t.csv"), "target": "label"}
    data["categorical"] = ["colour"]
    rows = {"features": np.zeros((1, 1), "float32"), "colour": np.array(["green"], dtype=object)}
    return "mlp.yaml", [f"data={json.dumps(data)}"], rows


@pytest.mark.parametrize(
    "source", [mnist, imdb, image_folder, text_folder, csv_text_streamed, csv_categories]
)
def test_a_run_per_source_through_the_cli(source, tmp_path):
    import mlflow

    pipeline, overrides, raw = source(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = run_tfdl(
        "train",
        PROJECT / "pipelines" / pipeline,
        *overrides,
        *QUICK,
        env={"MLFLOW_TRACKING_URI": uri},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    run_id = out.stdout.split("run ")[1].split()[0]
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.status == "FINISHED" and "test_loss" in run.data.metrics
    mlflow.set_tracking_uri(uri)
    predicted = np.asarray(mlflow.pyfunc.load_model(f"runs:/{run_id}/model").predict(raw))
    assert predicted.shape[0] == 1 and np.isfinite(predicted).all()
