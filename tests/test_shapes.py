"""The example picture folder: layout, determinism, real differences between classes, refusals."""

import numpy as np
import pytest
from PIL import Image

from tfdl.data.shapes import CLASSES, make_shapes
from tfdl.errors import ConfigError


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_counts_and_layout(tmp_path):
    folder = tmp_path / "shapes"
    assert make_shapes(folder, per_class=5, size=16) == {c: 5 for c in CLASSES}
    assert sorted(p.name for p in folder.iterdir()) == list(CLASSES)
    for c in CLASSES:
        assert sorted(p.name for p in (folder / c).iterdir()) == [
            f"{c}_{i:04d}.png" for i in range(5)
        ]


def test_subset_of_classes_into_existing_empty_folder(tmp_path):
    assert make_shapes(tmp_path, per_class=2, size=8, classes=["triangle"]) == {"triangle": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["triangle"]


@pytest.mark.parametrize("size", [8, 64, 100])
def test_png_rgb_of_the_right_size(tmp_path, size):
    make_shapes(tmp_path / "s", per_class=2, size=size)
    for path in (tmp_path / "s").rglob("*"):
        if path.is_file():
            with Image.open(path) as image:
                assert (image.format, image.mode, image.size) == ("PNG", "RGB", (size, size))


def files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        make_shapes(tmp_path / name, per_class=4, size=32, seed=seed)
    a, b, c = (files(tmp_path / name) for name in "abc")
    assert a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a)


def test_shapes_fill_their_bounding_box_as_geometry_predicts(tmp_path):
    # Independent of size and place: a square fills its box, its inscribed circle pi/4 of it,
    # a triangle with base and height the box's side one half.
    make_shapes(tmp_path, per_class=40, size=64, seed=1)
    expected = {"circle": (np.pi / 4, 0.03), "square": (1.0, 0.0), "triangle": (0.5, 0.04)}
    for c, (ratio, tolerance) in expected.items():
        for path in (tmp_path / c).iterdir():
            image = pixels(path)
            # Exactly two colours, and the corner is background (the shape keeps a margin).
            assert len(np.unique(image.reshape(-1, 3), axis=0)) == 2
            shape = (image != image[0, 0]).any(axis=-1)
            ys, xs = np.nonzero(shape)
            box = (np.ptp(ys) + 1) * (np.ptp(xs) + 1)
            assert shape.sum() / box == pytest.approx(ratio, abs=tolerance), path.name
            # 30-80% of the picture wide: neither a dot nor the whole picture.
            assert 0.3 * 64 - 1 <= max(np.ptp(ys), np.ptp(xs)) + 1 <= 0.8 * 64 + 1


def test_sizes_places_and_colours_vary(tmp_path):
    # Otherwise a model could tell the classes apart without looking at shapes.
    make_shapes(tmp_path, per_class=30, size=32, classes=["square"])
    images = [pixels(p) for p in (tmp_path / "square").iterdir()]
    masks = [(image != image[0, 0]).any(axis=-1) for image in images]
    assert len({m.sum() for m in masks}) > 5
    assert len({np.nonzero(m)[0].min() for m in masks}) > 5
    backgrounds = [image[0, 0].mean() for image in images]
    assert min(backgrounds) < 90 and max(backgrounds) > 165


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"per_class": 0}, "per_class"),
        ({"size": 7}, "size"),
        ({"size": 1025}, "size"),
        ({"classes": ["circle", "hexagon"]}, "classes"),
        ({"classes": []}, "classes"),
        ({"classes": ["square", "square"]}, "classes"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_refused_before_writing(tmp_path, arguments, field):
    with pytest.raises(ConfigError) as err:
        make_shapes(tmp_path / "new", **arguments)
    assert err.value.field == field
    assert not (tmp_path / "new").exists()


def test_folder_not_empty_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError) as err:
        make_shapes(tmp_path, per_class=1, size=8)
    assert err.value.field == "folder"
    assert f"{tmp_path} is not empty" in str(err.value)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("target", ["file", "file/under"])
def test_unwritable_folder_is_one_config_error(tmp_path, target):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError) as err:
        make_shapes(tmp_path / target, per_class=1, size=8)
    assert err.value.field == "folder"
    assert str(tmp_path / target) in str(err.value)
    assert "\n" not in str(err.value) and err.value.__suppress_context__


def test_readable_by_keras_image_dataset_from_directory(tmp_path):
    import keras

    make_shapes(tmp_path, per_class=7, size=40)
    ds = keras.utils.image_dataset_from_directory(tmp_path, image_size=(32, 32), batch_size=8)
    assert ds.class_names == ["circle", "square", "triangle"]
    labels = np.concatenate([y.numpy() for _, y in ds])
    assert np.bincount(labels).tolist() == [7, 7, 7]
