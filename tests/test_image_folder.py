"""Image folders: one subfolder per class, split three ways from the seed, streamed from
disk by tf.data (the splits hold file names, never pixels), rescaled inside the model."""

import numpy as np
import pytest
from PIL import Image

import tfdl
from tfdl.config import validate
from tfdl.data.shapes import make_shapes
from tfdl.data.split import load_splits
from tfdl.errors import ConfigError
from tfdl.prepared import prepare

from .conftest import TINY, run_tfdl

SIZE = [16, 16]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pictures") / "shapes"
    make_shapes(folder, per_class=20, size=24, seed=1)
    return folder


def pipeline(path, **data):
    return {
        **TINY,
        "data": {"source": "image_folder", "path": str(path), "image_size": SIZE, **data},
        "model": {"arch": "cnn2d", "filters": [8, 16], "batch_norm": False, "dense_units": [16]},
    }


def splits(path, seed=0, **data):
    return load_splits(validate(pipeline(path, **data)).data, seed)


def test_the_splits_hold_file_names_split_by_class_from_the_seed(shapes):
    s = splits(shapes)
    assert s.spec.class_names == ("circle", "square", "triangle")
    assert s.spec.input_shape == (16, 16, 3) and s.spec.task == "multiclass"
    assert s.x_train.dtype == object and all(str(p).endswith(".png") for p in s.x_train)
    names = [*s.x_train, *s.x_val, *s.x_test]
    assert len(set(names)) == len(names) == 60  # every picture in exactly one split
    # Labels follow the folders, and each split keeps the classes' balance (stratified).
    for x, y in [(s.x_train, s.y_train), (s.x_test, s.y_test)]:
        assert [s.spec.class_names[k] for k in y] == [p.split("/")[-2] for p in x]
        assert len(set(np.bincount(y))) == 1
    again, other = splits(shapes), splits(shapes, seed=1)
    assert list(again.x_test) == list(s.x_test) and list(other.x_test) != list(s.x_test)


@pytest.mark.parametrize("cache", ["none", "memory", "disk"])
def test_batches_are_the_decoded_pixels_whatever_the_cache(shapes, cache):
    p = prepare(validate(pipeline(shapes, cache=cache)))
    x, y = next(iter(p.dataset("test")))  # not shuffled: the files in split order
    first = Image.open(p.splits.x_test[0]).convert("RGB").resize((16, 16), Image.BILINEAR)
    n = len(p.splits.y_test)
    assert x.shape == (n, 16, 16, 3) and x.dtype == "float32"
    assert 0 <= float(np.min(x)) and float(np.max(x)) > 100  # raw 0..255, scaled in the model
    # Resized by TensorFlow here, by PIL (with antialiasing) there: alike, not equal.
    assert np.mean(np.abs(x[0] - np.asarray(first, dtype="float32"))) < 8
    np.testing.assert_array_equal(np.asarray(y).ravel(), p.splits.y_test)
    # Two epochs of the training split: every picture once each, in a new order.
    train = p.dataset("train")  # one dataset, two passes: as fit runs epochs
    epochs = [np.concatenate([np.asarray(b).reshape(len(b), -1).sum(1) for b, _ in train])]
    epochs.append(np.concatenate([np.asarray(b).reshape(len(b), -1).sum(1) for b, _ in train]))
    np.testing.assert_allclose(np.sort(epochs[0]), np.sort(epochs[1]), rtol=1e-6)
    assert len(epochs[0]) == len(p.splits.y_train)
    assert not np.array_equal(epochs[0], epochs[1])  # shuffled anew


def test_grayscale_and_chosen_classes(shapes):
    s = splits(shapes, color_mode="grayscale", classes=["square", "circle"])
    assert s.spec.input_shape == (16, 16, 1) and s.spec.task == "binary"
    assert s.spec.class_names == ("square", "circle")
    p = prepare(validate(pipeline(shapes, color_mode="grayscale", classes=["square", "circle"])))
    assert next(iter(p.dataset("val")))[0].shape[-1] == 1


def write_png(path, size=(10, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 10, 10)).save(path)


@pytest.mark.parametrize(
    "layout, fields, words",
    [
        ({}, {"path": "nowhere"}, ["data.path", "no such folder"]),
        ({"lone/a.png": "png"}, {}, ["data.path", "only 'lone'", "2 or more"]),
        ({"a/x.png": "png", "b/notes.txt": "text"}, {}, ["data.path", "notes.txt", "images"]),
        ({"a/x.png": "png", "b/y.png": "text"}, {}, ["data.path", "y.png is not an image"]),
        ({"a/x.png": "png", "b/.hidden": "text"}, {}, ["data.path", "class folder", "empty"]),
        ({"a/x.png": "png", "b/y.png": "png"}, {"classes": ["a", "c"]}, ["data.classes", "'c'"]),
    ],
)
def test_folder_mistakes_are_one_line(tmp_path, layout, fields, words):
    root = tmp_path / "pictures"
    root.mkdir()
    for name, kind in layout.items():
        if kind == "png":
            write_png(root / name)
        else:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text("not a picture")
    data = {"path": str(root), **fields}
    if data["path"] == "nowhere":
        data["path"] = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError) as err:
        splits(**data)
    line = str(err.value)
    assert "\n" not in line and all(w in line for w in words), line


def test_images_too_small_for_the_model_are_refused_before_any_run(shapes):
    with pytest.raises(ConfigError) as err:
        prepare(validate(pipeline(shapes, image_size=[3, 8])))  # two 2x2 pools: 4 at least
    assert err.value.field == "data.image_size" and "at least 4 pixels" in str(err.value)
    assert prepare(validate(pipeline(shapes, image_size=[4, 8]))).spec.input_shape == (4, 8, 3)


def test_a_run_serves_raw_pixels_from_a_png_file(store, shapes, tmp_path):
    import mlflow

    run = tfdl.train({**pipeline(shapes), "train": {**TINY["train"], "epochs": 3}})
    model = run.model
    assert model.layers[1].name == "rescale"  # the first layer after the input
    png = tmp_path / "new.png"
    make_shapes(tmp_path / "more", per_class=1, size=16, seed=9, classes=["square"])
    (tmp_path / "more" / "square" / "square_0000.png").rename(png)
    pixels = np.asarray(Image.open(png).convert("RGB"), dtype="float32")[None]
    served = mlflow.pyfunc.load_model(f"runs:/{run.run_id}/model").predict(pixels)
    np.testing.assert_allclose(served, model.predict(pixels, verbose=0), rtol=1e-4, atol=1e-6)
    out = run_tfdl("predict", "--run-id", run.run_id, "--input", str(png))
    assert out.returncode == 0, out.stderr
    header, row = out.stdout.splitlines()
    assert header == "prediction,p_circle,p_square,p_triangle"
    np.testing.assert_allclose([float(v) for v in row.split(",")[1:]], served[0], rtol=1e-4)


@pytest.mark.parametrize("arch", ["cnn2d", "resnet"])
def test_both_image_architectures_learn_from_the_stream_augmented_in_training_only(shapes, arch):
    from tfdl.training import build

    model_cfg = {"arch": arch, "augment": {"flip": "horizontal"}}
    if arch == "cnn2d":
        model_cfg |= {"filters": [8, 16], "batch_norm": False, "dense_units": [16]}
    else:
        model_cfg |= {"stem_filters": 8, "stages": [8, 16], "blocks_per_stage": 1}
    cfg = validate(
        {**pipeline(shapes), "model": model_cfg, "train": {**TINY["train"], "batch_size": 8}}
    )
    p = prepare(cfg)
    model = build(p)
    x, _ = p.probe(16)
    # Augmentation is random in training and the identity otherwise.
    np.testing.assert_array_equal(model(x, training=False), model(x, training=False))
    augment = model.get_layer("augmentation")
    assert not np.allclose(augment(x, training=True), x)
    np.testing.assert_array_equal(augment(x, training=False), x)
    # The training loss (batch norm's batch statistics: its running ones need more steps).
    history = model.fit(p.dataset("train"), epochs=30, verbose=0, shuffle=False).history
    assert history["loss"][-1] < 0.8 * history["loss"][0], history["loss"]
