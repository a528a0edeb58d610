"""The Keras image data sets as sources, from small files in the formats Keras caches.

No test here touches the network: every file is written by the test, and the cache Keras
would read is an empty folder (or holds those small files).
"""

import gzip
import pickle
import subprocess
import sys

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError

from tfdl.data import keras_sets
from tfdl.data.schema import DataConfig
from tfdl.data.split import load_splits
from tfdl.errors import ConfigError

ADAPTER = TypeAdapter(DataConfig)
SOURCES = ("mnist", "fashion_mnist", "cifar10", "cifar100")
SHAPES = {
    "mnist": (28, 28, 1),
    "fashion_mnist": (28, 28, 1),
    "cifar10": (32, 32, 3),
    "cifar100": (32, 32, 3),
}
CLASSES = {"mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100}
N_TRAIN, N_TEST = 120, 30


def splits_of(seed=0, **fields):
    return load_splits(ADAPTER.validate_python(fields), seed)


# --- files in Keras's formats -----------------------------------------------------------------


def images(source, n, first_id=0, seed=0):
    """Random uint8 images whose first two pixel values spell a sample id (to follow
    samples through the split), and labels cycling through every class."""
    height, width, channels = SHAPES[source]
    x = np.random.default_rng(seed).integers(0, 256, (n, height, width, channels), np.uint8)
    ids = np.arange(first_id, first_id + n)
    x[:, 0, 0, 0], x[:, 0, 1, 0] = ids % 256, ids // 256
    y = np.arange(n) % CLASSES[source]
    return x, y


def ids_of(x: np.ndarray) -> np.ndarray:
    return x[:, 0, 0, 0].astype(int) + 256 * x[:, 0, 1, 0].astype(int)


def parts(source):
    """The training part (ids 0..) and the test part (ids 1000..) a test file holds."""
    n_classes = CLASSES[source]
    n_train = max(N_TRAIN, 10 * n_classes)  # room for a stratified validation split
    return images(source, n_train), images(source, max(N_TEST, n_classes), 1000, seed=1)


def write_mnist(folder, train, test, name="mnist.npz", **arrays):
    """mnist.npz as keras.datasets.mnist caches it."""
    path = folder / name
    content = {"x_train": train[0][..., 0], "y_train": train[1].astype(np.uint8)}
    content |= {"x_test": test[0][..., 0], "y_test": test[1].astype(np.uint8)}
    np.savez(path, **{**content, **arrays})
    return path


def idx(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic 0x0800 + dimensions, sizes, values."""
    head = (0x800 + array.ndim).to_bytes(4, "big")
    head += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return gzip.compress(head + array.astype(np.uint8).tobytes())


def write_fashion_mnist(folder, train, test):
    """The four gzipped IDX files keras.datasets.fashion_mnist caches, in one folder."""
    path = folder / "fashion-mnist"
    path.mkdir()
    for (images_file, labels_file), (x, y) in zip(
        keras_sets.FASHION_FILES.values(), (train, test), strict=True
    ):
        (path / images_file).write_bytes(idx(x[..., 0]))
        (path / labels_file).write_bytes(idx(y))
    return path


def batch(x, y, label_key="labels", extra=None):
    """A pickled CIFAR batch: bytes keys, rows of 3072 values channel by channel (protocol
    4: arrays rebuilt by numpy's _reconstruct, all Keras's own reader lets through)."""
    data = x.transpose(0, 3, 1, 2).reshape(len(x), -1)
    content = {b"batch_label": b"a test batch", b"data": data}
    content |= {label_key.encode(): np.asarray(y).tolist()}
    content |= {b"filenames": [f"{i}.png".encode() for i in range(len(x))]}
    return pickle.dumps({**content, **(extra or {})}, protocol=4)


def write_cifar10(folder, train, test):
    """The folder cifar-10-batches-py that keras.datasets.cifar10 extracts."""
    path = folder / "cifar-10-batches-py"
    path.mkdir()
    for i, rows in enumerate(np.array_split(np.arange(len(train[1])), 5), start=1):
        (path / f"data_batch_{i}").write_bytes(batch(train[0][rows], train[1][rows]))
    (path / "test_batch").write_bytes(batch(*test))
    return path


def write_cifar100(folder, train, test):
    """The folder cifar-100-python that keras.datasets.cifar100 extracts; the coarse
    labels are the fine ones modulo 20."""
    path = folder / "cifar-100-python"
    path.mkdir()
    for name, (x, y) in (("train", train), ("test", test)):
        coarse = {b"coarse_labels": (np.asarray(y) % 20).tolist()}
        (path / name).write_bytes(batch(x, y, "fine_labels", coarse))
    return path


WRITERS = {
    "mnist": write_mnist,
    "fashion_mnist": write_fashion_mnist,
    "cifar10": write_cifar10,
    "cifar100": write_cifar100,
}


def write_keras_set(source, folder):
    """A small copy of `source` in the format Keras caches; returns its data.path."""
    return WRITERS[source](folder, *parts(source))


# --- shapes, classes, raw pixels ----------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_a_local_copy_loads_as_raw_float_pixels_with_the_class_names(source, tmp_path):
    (x_train, y_train), (x_test, y_test) = parts(source)
    path = write_keras_set(source, tmp_path)
    s = splits_of(source=source, path=str(path))
    k = CLASSES[source]
    assert s.spec.input_shape == SHAPES[source] and s.spec.task == "multiclass"
    assert s.spec.num_classes == k and len(s.spec.class_names) == k
    for x, y in [(s.x_train, s.y_train), (s.x_val, s.y_val), (s.x_test, s.y_test)]:
        assert x.dtype == np.float32 and x.shape[1:] == SHAPES[source]
        assert y.dtype == np.int64 and len(x) == len(y) > 0
    # Raw pixel values, unscaled: the file's uint8 values as floats.
    np.testing.assert_array_equal(s.x_test, x_test.astype(np.float32))
    np.testing.assert_array_equal(s.y_test, y_test)
    assert s.x_train.max() > 200 and s.x_train.min() >= 0
    assert s.info["split"] == "source" and s.info["n_test"] == len(y_test)


def test_class_names():
    assert keras_sets.DIGITS == tuple("0123456789")
    assert keras_sets.FASHION[:3] == ("T-shirt/top", "Trouser", "Pullover")
    assert keras_sets.FASHION[-1] == "Ankle boot" and len(keras_sets.FASHION) == 10
    assert (
        keras_sets.CIFAR10[:2] == ("airplane", "automobile") and keras_sets.CIFAR10[-1] == "truck"
    )
    fine, coarse = keras_sets.CIFAR100["fine"], keras_sets.CIFAR100["coarse"]
    assert len(set(fine)) == 100 and list(fine) == sorted(fine) and fine[0] == "apple"
    assert len(set(coarse)) == 20 and coarse[0] == "aquatic_mammals"


def test_cifar100_coarse_labels(tmp_path):
    path = write_keras_set("cifar100", tmp_path)
    s = splits_of(source="cifar100", path=str(path), label_mode="coarse")
    assert s.spec.num_classes == 20 and s.spec.class_names[1] == "fish"
    np.testing.assert_array_equal(s.y_test, parts("cifar100")[1][1] % 20)


def test_keras_own_readers_agree(tmp_path, monkeypatch):
    """The same files through Keras's own loaders (their download pointed at the files)
    give the same images and labels."""
    from keras.src.datasets import cifar, fashion_mnist, mnist

    for source, module in (("mnist", mnist), ("fashion_mnist", fashion_mnist)):
        folder = tmp_path / source
        folder.mkdir()
        path = write_keras_set(source, folder)
        if source == "mnist":
            monkeypatch.setattr(module, "get_file", lambda *a, _file=path, **kw: str(_file))
        else:
            monkeypatch.setattr(module, "get_file", lambda f, _dir=path, **kw: str(_dir / f))
        ours = getattr(keras_sets, f"read_{source}" if source != "mnist" else "read_mnist_npz")
        for (x, y), (kx, ky) in zip(ours(str(path)), module.load_data(), strict=True):
            np.testing.assert_array_equal(x[..., 0], kx)
            np.testing.assert_array_equal(y, ky)
    path = write_keras_set("cifar10", tmp_path)
    (x, y), _ = keras_sets.read_cifar10(str(path))
    kx, ky = cifar.load_batch(str(path / "data_batch_1"))
    n = len(ky)
    np.testing.assert_array_equal(x[:n], kx.transpose(0, 2, 3, 1))  # as cifar10.load_data
    np.testing.assert_array_equal(y[:n], ky)


def test_keras_cache_folder_is_found_when_cached(tmp_path, monkeypatch):
    """With the files in Keras's cache and no data.path, keras.datasets reads them."""
    from keras.src.backend import config
    from keras.src.datasets import mnist

    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path))
    (tmp_path / "datasets").mkdir()
    path = write_keras_set("mnist", tmp_path / "datasets")
    assert keras_sets.keras_cache() / "mnist.npz" == path
    monkeypatch.setattr(mnist, "get_file", lambda fname, **kw: str(tmp_path / "datasets" / fname))
    monkeypatch.setattr(keras_sets, "reachable", lambda host: pytest.fail("probed the network"))
    s = splits_of(source="mnist", normalize="none")
    np.testing.assert_array_equal(s.x_test, parts("mnist")[1][0].astype(np.float32))


# --- the split ----------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["mnist", "cifar10"])
def test_source_split_keeps_the_test_part_and_takes_validation_from_training(source, tmp_path):
    path = str(write_keras_set(source, tmp_path))
    (_, y_train), (_, y_test) = parts(source)
    a, b, c = (splits_of(seed, source=source, path=path, val_fraction=0.25) for seed in (1, 1, 2))
    np.testing.assert_array_equal(ids_of(a.x_test), np.arange(1000, 1000 + len(y_test)))
    train, val = ids_of(a.x_train), ids_of(a.x_val)
    assert sorted([*train, *val]) == list(range(len(y_train)))  # the training part, split
    assert len(val) == round(0.25 * len(y_train))
    np.testing.assert_array_equal(a.y_val, y_train[val])  # labels travel with their images
    assert np.bincount(a.y_val).tolist() == [len(val) // 10] * 10  # stratified
    for p, q in zip(
        (a.x_train, a.x_val, a.y_train, a.y_val),
        (b.x_train, b.x_val, b.y_train, b.y_val),
        strict=True,
    ):
        np.testing.assert_array_equal(p, q)  # same seed, same split
    assert set(ids_of(c.x_val)) != set(val)  # another seed, another validation split
    np.testing.assert_array_equal(c.x_test, a.x_test)  # the test part never moves


def test_random_split_pools_both_parts(tmp_path):
    path = str(write_keras_set("fashion_mnist", tmp_path))
    s = splits_of(3, source="fashion_mnist", path=path, split="random", test_fraction=0.2)
    ids = [ids_of(x) for x in (s.x_train, s.x_val, s.x_test)]
    assert sorted(np.concatenate(ids).tolist()) == [*range(N_TRAIN), *range(1000, 1000 + N_TEST)]
    assert len(ids[2]) == 0.2 * (N_TRAIN + N_TEST)
    assert (ids[2] < 1000).any() and (ids[2] >= 1000).any()  # test drawn from both parts
    assert s.info["split"] == "random"


def test_max_samples_draws_from_the_training_part(tmp_path):
    path = str(write_keras_set("mnist", tmp_path))

    def drawn(seed, **fields):
        s = splits_of(seed, source="mnist", path=path, val_fraction=0.25, **fields)
        return s, set(ids_of(s.x_train)) | set(ids_of(s.x_val))

    s, ids = drawn(0, max_samples=80)
    assert len(ids) == 80 and max(ids) < N_TRAIN and s.info["n_test"] == N_TEST
    assert np.bincount(np.concatenate([s.y_train, s.y_val])).tolist() == [8] * 10  # stratified
    assert drawn(0, max_samples=80)[1] == ids and drawn(1, max_samples=80)[1] != ids
    pooled = splits_of(source="mnist", path=path, max_samples=100, split="random")
    assert pooled.info["n_train"] + pooled.info["n_val"] + pooled.info["n_test"] == 100
    with pytest.raises(ConfigError) as err:
        splits_of(source="mnist", path=path, max_samples=5)
    assert err.value.field == "data.max_samples" and len(err.value.line().splitlines()) == 1


def test_normaliser_is_fitted_on_the_training_split_only(tmp_path):
    path = str(write_keras_set("cifar10", tmp_path))
    s = splits_of(source="cifar10", path=path)
    mean = np.asarray(s.spec.normalizer["mean"])
    variance = np.asarray(s.spec.normalizer["variance"])
    assert mean.shape == (32, 32, 3)  # per pixel and channel, in raw 0..255 units
    np.testing.assert_allclose(mean, s.x_train.mean(axis=0), rtol=1e-5)
    var = s.x_train.var(axis=0)
    np.testing.assert_allclose(variance, np.where(var > 0, var, 1), rtol=1e-4)  # 1: only centred
    everything = np.concatenate([s.x_train, s.x_val, s.x_test])
    assert not np.allclose(mean, everything.mean(axis=0), rtol=1e-5)
    assert s.info["normalize"] == "standard"


# --- errors: one line, naming the setting and the file ------------------------------------------


@pytest.mark.parametrize(
    "source, cached, copy",
    [
        ("mnist", "mnist.npz", "mnist.npz"),
        ("fashion_mnist", "fashion-mnist/train-images-idx3-ubyte.gz", "fashion-mnist/"),
        ("cifar10", "cifar-10-batches-py-target_archive", "cifar-10-batches-py/"),
        ("cifar100", "cifar-100-python-target_archive", "cifar-100-python/"),
    ],
)
def test_offline_without_cache_is_one_line_naming_the_cache_and_data_path(
    source, cached, copy, empty_cache
):
    with pytest.raises(ConfigError) as err:
        splits_of(source=source)
    line = err.value.line()
    assert len(line.splitlines()) == 1 and err.value.field == "data.path"
    assert line == (
        f"error: data.path: {source} is not downloaded: no {empty_cache / cached} in Keras's "
        f"cache and no network to fetch it; allowed: a local copy: data.path=/path/to/{copy}"
    )


@pytest.mark.parametrize("source, config", [("mnist", "Mnist"), ("imdb", "Imdb")])
def test_offline_error_answers_without_tensorflow(tmp_path, source, config):
    code = (
        "import sys\n"
        "from tfdl.data import keras_sets\n"
        f"from tfdl.data.schema import {config}\n"
        "keras_sets.reachable = lambda host: False\n"
        "try:\n"
        f"    keras_sets.load_{source}({config}(source='{source}'), 0)\n"
        "except Exception as err:\n"
        "    print(err)\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    env = {"KERAS_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(
        f"error: data.path: {source} is not downloaded: no {tmp_path / 'datasets' / source}.npz"
    )


def _wrong_keys(tmp_path):
    (x, y), (x_test, y_test) = parts("mnist")
    np.savez(tmp_path / "digits.npz", x=x[..., 0], y=y, x_test=x_test[..., 0], y_test=y_test)
    return "mnist", tmp_path / "digits.npz", "digits.npz"


def _truncated_npz(tmp_path):
    path = write_mnist(tmp_path, *parts("mnist"))
    path.write_bytes(path.read_bytes()[:2000])
    return "mnist", path, "mnist.npz"


def _wrong_shape(tmp_path):
    (x, y), test = parts("mnist")
    return "mnist", write_mnist(tmp_path, (x[:, :20], y), test), "mnist.npz"


def _not_npz(tmp_path):
    (tmp_path / "mnist.npz").write_text("hello")
    return "mnist", tmp_path / "mnist.npz", "mnist.npz"


def _truncated_idx(tmp_path):
    folder = write_keras_set("fashion_mnist", tmp_path)
    file = folder / "t10k-images-idx3-ubyte.gz"
    file.write_bytes(gzip.compress(gzip.decompress(file.read_bytes())[:-100]))
    return "fashion_mnist", folder, "t10k-images-idx3-ubyte.gz"


def _missing_idx(tmp_path):
    folder = write_keras_set("fashion_mnist", tmp_path)
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    return "fashion_mnist", folder, "train-labels-idx1-ubyte.gz"


def _corrupt_gzip(tmp_path):
    folder = write_keras_set("fashion_mnist", tmp_path)
    file = folder / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(file.read_bytes())
    data[12:20] = b"\xff" * 8  # inside the deflate stream
    file.write_bytes(bytes(data))
    return "fashion_mnist", folder, "t10k-labels-idx1-ubyte.gz"


def _cut_gzip(tmp_path):
    folder = write_keras_set("fashion_mnist", tmp_path)
    file = folder / "train-images-idx3-ubyte.gz"
    file.write_bytes(file.read_bytes()[:500])
    return "fashion_mnist", folder, "train-images-idx3-ubyte.gz"


def _truncated_batch(tmp_path):
    folder = write_keras_set("cifar10", tmp_path)
    file = folder / "data_batch_3"
    file.write_bytes(file.read_bytes()[:300])
    return "cifar10", folder, "data_batch_3"


def _batch_without_labels(tmp_path):
    folder = write_keras_set("cifar10", tmp_path)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}))
    return "cifar10", folder, "test_batch"


def _malicious_batch(tmp_path):
    class Gadget:
        def __reduce__(self):
            return (print, ("ran",))

    folder = write_keras_set("cifar10", tmp_path)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Gadget(), b"labels": [1]}))
    return "cifar10", folder, "test_batch"


def _file_for_folder(tmp_path):
    return "cifar10", write_mnist(tmp_path, *parts("mnist")), "mnist.npz"


def _no_such_path(tmp_path):
    return "mnist", tmp_path / "nowhere.npz", "nowhere.npz"


BROKEN = [
    _wrong_keys,
    _truncated_npz,
    _wrong_shape,
    _not_npz,
    _truncated_idx,
    _missing_idx,
    _cut_gzip,
    _corrupt_gzip,
    _truncated_batch,
    _batch_without_labels,
    _malicious_batch,
    _file_for_folder,
    _no_such_path,
]


@pytest.mark.parametrize("make", BROKEN, ids=lambda f: f.__name__.strip("_"))
def test_a_malformed_copy_is_one_line_naming_the_file(make, tmp_path, capsys):
    source, path, name = make(tmp_path)
    with pytest.raises(ConfigError) as err:
        splits_of(source=source, path=str(path))
    line = err.value.line()
    assert err.value.field == "data.path" and len(line.splitlines()) == 1
    assert line.startswith("error: data.path: ") and name in line, line
    assert "ran" not in capsys.readouterr().out  # nothing in a pickle ever runs


def test_labels_outside_the_classes_are_an_error(tmp_path):
    (x, y), test = parts("mnist")
    path = write_mnist(tmp_path, (x, y), test, y_train=(y + 5).astype(np.uint8))
    with pytest.raises(ConfigError, match="training labels outside 0..9"):
        splits_of(source="mnist", path=str(path))


def test_schema_rejects_unknown_values():
    for fields in ({"split": "shuffle"}, {"max_samples": 0}, {"as_images": True}):
        with pytest.raises(ValidationError):
            ADAPTER.validate_python({"source": "mnist", **fields})
    with pytest.raises(ValidationError):
        ADAPTER.validate_python({"source": "cifar100", "label_mode": "medium"})


# --- end to end ---------------------------------------------------------------------------------


def test_a_cnn_trains_on_mnist_from_a_local_copy_and_takes_raw_pixels(store, tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    import tfdl

    path = write_keras_set("mnist", tmp_path)
    (_, _), (x_test, y_test) = parts("mnist")
    result = tfdl.train(
        {
            "data": {"source": "mnist", "path": str(path)},
            "model": {"arch": "cnn2d", "filters": [4], "dense_units": [8]},
            "train": {"epochs": 1, "batch_size": 32, "verbose": 0},
            "tracking": {"experiment": "test"},
        }
    )
    run = MlflowClient().get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["data_info.split"] == "source"
    assert int(run.data.params["data_info.n_test"]) == len(y_test)
    model = mlflow.tensorflow.load_model(f"runs:/{result.run_id}/model")
    assert model.get_layer("normalize").mean.numpy().max() > 50  # statistics of raw pixels
    # The file's own test images, raw 0..255, give the run's logged test accuracy.
    predicted = model.predict(x_test.astype(np.float32), verbose=0).argmax(axis=1)
    assert run.data.metrics["test_accuracy"] == pytest.approx((predicted == y_test).mean())
