"""The Keras image data sets (MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100) as sources.

Each comes as Keras ships it: a training part and a test part of raw uint8 pixels.
Without `data.path` `keras.datasets` loads it from Keras's cache (downloaded once, its
hash checked); on a machine without network and without the cached file the source says
so in one line before Keras would try to download. With `data.path` the source reads a
local copy in the format Keras caches, with numpy, gzip and pickle alone (no TensorFlow).
"""

import gzip
import os
import pickle
import sys
import zlib
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from tfdl.data.schema import Cifar10, Cifar100, FashionMnist, Mnist
from tfdl.data.spec import Arrays, DataSpec, Splits
from tfdl.data.split import hold_out, split_and_normalise, splits_from_rows
from tfdl.errors import ConfigError

DIGITS = tuple(str(d) for d in range(10))
FASHION = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10 = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# CIFAR-100's labels are numbered in alphabetical order of their names (its `meta` file).
CIFAR100 = {
    "fine": tuple(
        """
        apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge
        bus butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud
        cockroach couch crab crocodile cup dinosaur dolphin elephant flatfish forest fox
        girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster
        man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter
        palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit
        raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake
        spider squirrel streetcar sunflower sweet_pepper table tank telephone television
        tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm
        """.split()
    ),
    "coarse": tuple(
        """
        aquatic_mammals fish flowers food_containers fruit_and_vegetables
        household_electrical_devices household_furniture insects large_carnivores
        large_man-made_outdoor_things large_natural_outdoor_scenes
        large_omnivores_and_herbivores medium_mammals non-insect_invertebrates people
        reptiles small_mammals trees vehicles_1 vehicles_2
        """.split()
    ),
}

MNIST_FILE = "mnist.npz"
MNIST_KEYS = ("x_train", "y_train", "x_test", "y_test")
FASHION_DIR = "fashion-mnist"
FASHION_FILES = {  # part -> (images, labels), as keras.datasets.fashion_mnist caches them
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
IDX_IMAGES, IDX_LABELS = 2051, 2049  # the IDX magic numbers: unsigned bytes, 3 and 1 dims
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_ARCHIVE = "cifar-10-batches-py-target_archive"  # what keras.datasets.cifar10 caches
CIFAR10_BATCHES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
CIFAR100_DIR = "cifar-100-python"
CIFAR100_ARCHIVE = "cifar-100-python-target_archive"
CIFAR100_BATCHES = {"train": ("train",), "test": ("test",)}

# Where keras.datasets downloads each set from: only probed, never fetched, by tfdl itself.
ORIGINS = {
    "mnist": "storage.googleapis.com",
    "fashion_mnist": "storage.googleapis.com",
    "cifar10": "www.cs.toronto.edu",
    "cifar100": "www.cs.toronto.edu",
}
PROBE_SECONDS = 3.0

Part = tuple[np.ndarray, np.ndarray]  # (uint8 images, labels) of one part


# --- the sources -----------------------------------------------------------------------------


def load_mnist(cfg: Mnist, seed: int) -> Splits:
    if cfg.path:
        train, test = read_mnist_npz(cfg.path)
    else:
        cached(cfg, MNIST_FILE, copy=MNIST_FILE)
        train, test = _from_keras(cfg, MNIST_FILE, "mnist")
    return keras_splits(cfg, seed, train, test, DIGITS)


def load_fashion_mnist(cfg: FashionMnist, seed: int) -> Splits:
    if cfg.path:
        train, test = read_fashion_mnist(cfg.path)
    else:
        files = [f"{FASHION_DIR}/{name}" for pair in FASHION_FILES.values() for name in pair]
        cached(cfg, *files, copy=f"{FASHION_DIR}/")
        train, test = _from_keras(cfg, f"{FASHION_DIR}/", "fashion_mnist")
    return keras_splits(cfg, seed, train, test, FASHION)


def load_cifar10(cfg: Cifar10, seed: int) -> Splits:
    if cfg.path:
        train, test = read_cifar10(cfg.path)
    else:
        cached(cfg, CIFAR10_ARCHIVE, copy=f"{CIFAR10_DIR}/")
        train, test = _from_keras(cfg, CIFAR10_ARCHIVE, "cifar10")
    return keras_splits(cfg, seed, train, test, CIFAR10)


def load_cifar100(cfg: Cifar100, seed: int) -> Splits:
    if cfg.path:
        train, test = read_cifar100(cfg.path, cfg.label_mode)
    else:
        cached(cfg, CIFAR100_ARCHIVE, copy=f"{CIFAR100_DIR}/")
        train, test = _from_keras(cfg, CIFAR100_ARCHIVE, "cifar100", label_mode=cfg.label_mode)
    return keras_splits(cfg, seed, train, test, CIFAR100[cfg.label_mode])


# --- splitting ---------------------------------------------------------------------------------


def keras_splits(cfg, seed: int, train: Part, test: Part, class_names) -> Splits:
    """Splits of a data set that comes as a training and a test part: `split: source` keeps
    the test part as the test split and takes the validation split from the training part;
    `split: random` pools both and splits them like any other source."""
    k = len(class_names)
    if not len(train[1]):
        raise ConfigError("data.path", f"{_where(cfg)} has an empty training part")
    for (_, y), part in zip((train, test), ("training", "test"), strict=True):
        if len(y) and (y.min() < 0 or y.max() >= k):
            raise ConfigError(
                "data.path",
                f"{_where(cfg)} has {part} labels outside 0..{k - 1}",
                f"labels 0..{k - 1} for the {k} classes",
            )
    spec = DataSpec(
        input_shape=tuple(train[0].shape[1:]),
        task="multiclass",
        num_classes=k,
        class_names=tuple(class_names),
    )
    if cfg.split == "random":
        x = np.concatenate([train[0], test[0]])
        y = np.concatenate([train[1], test[1]]).astype(np.int64)
        x, y = _draw(cfg, seed, x, y)
        splits = split_and_normalise(Arrays(x=x, y=y, spec=spec), cfg, seed)
    else:
        x_train, y_train = _draw(cfg, seed, train[0], train[1].astype(np.int64))
        n = len(y_train)
        if not len(test[1]):
            raise ConfigError("data.path", f"{_where(cfg)} has an empty test part", "split: random")
        try:
            fit, val = hold_out(np.arange(n), y_train, cfg.val_fraction, seed, stratified=True)
        except ValueError as err:  # too few samples, or a class too small to stratify
            raise ConfigError(
                "data.val_fraction",
                f"cannot take a stratified validation split of val_fraction="
                f"{cfg.val_fraction:g} from {n} training samples of {k} classes: "
                f"{str(err).splitlines()[0]}",
                "more training samples (max_samples), or another val_fraction",
            ) from None
        x = np.concatenate([x_train, test[0]])
        y = np.concatenate([y_train, test[1].astype(np.int64)])
        rows = (fit, val, np.arange(n, len(y)))
        splits = splits_from_rows(Arrays(x=x, y=y, spec=spec), rows, cfg, seed)
    splits.info["split"] = cfg.split
    return splits


def _draw(cfg, seed: int, x: np.ndarray, y: np.ndarray) -> Part:
    """At most `max_samples` rows: a seeded draw stratified by class, in their order."""
    if cfg.max_samples is None or cfg.max_samples >= len(y):
        return x, y
    try:
        rows, _ = train_test_split(
            np.arange(len(y)), train_size=cfg.max_samples, random_state=seed, stratify=y
        )
    except ValueError as err:
        raise ConfigError(
            "data.max_samples",
            f"cannot draw {cfg.max_samples} of {len(y)} samples stratified by class: "
            f"{str(err).splitlines()[0]}",
            "at least one sample per class",
        ) from None
    rows = np.sort(rows)
    return x[rows], y[rows]


# --- Keras's own loaders -----------------------------------------------------------------------


def keras_cache() -> Path:
    """The folder Keras caches data sets in: <keras home>/datasets, where the home is
    $KERAS_HOME or ~/.keras (or /tmp/.keras when that cannot be written), as Keras decides."""
    config = sys.modules.get("keras.src.backend.config")
    if config is not None:  # Keras read its home when imported: ask it
        home = config.keras_home()
    elif "KERAS_HOME" in os.environ:
        home = os.environ["KERAS_HOME"]
    else:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    home = os.path.expanduser(home)
    if not os.access(home, os.W_OK):  # keras.utils.get_file's own fallback
        home = os.path.join("/tmp", ".keras")
    return Path(home) / "datasets"


def cached(cfg, *files: str, copy: str) -> None:
    """Fail in one line when Keras's cache lacks one of `files` and their origin cannot be
    reached: Keras would try to download them and wait long for the attempt to fail.
    With the origin in reach, Keras downloads them once (and checks their hash)."""
    folder = keras_cache()
    missing = [folder / f for f in files if not (folder / f).exists()]
    if missing and not reachable(ORIGINS[cfg.source]):
        raise ConfigError(
            "data.path",
            f"{cfg.source} is not downloaded: no {missing[0]} in Keras's cache and no "
            "network to fetch it",
            f"a local copy: data.path=/path/to/{copy}",
        )


def reachable(host: str) -> bool:
    """Whether a download from `host` can start: a proxy is configured (Keras's download
    goes through it), or an HTTPS connection opens within PROBE_SECONDS."""
    import socket
    import urllib.request

    if urllib.request.getproxies().get("https"):
        return True
    try:
        socket.create_connection((host, 443), timeout=PROBE_SECONDS).close()
    except OSError:
        return False
    return True


def _from_keras(cfg, copy: str, name: str, **options) -> tuple[Part, Part]:
    import importlib  # Keras (and TensorFlow) only here, when the data is needed

    try:
        module = importlib.import_module(f"keras.datasets.{name}")
        (x_train, y_train), (x_test, y_test) = module.load_data(**options)
    except Exception as err:  # a cached file with the wrong hash, and no network to refetch
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(
            "data.path",
            f"{cfg.source} cannot be loaded from Keras's cache {keras_cache()} ({reason})",
            f"a local copy: data.path=/path/to/{copy}",
        ) from None
    if x_train.ndim == 4 and x_train.shape[1] == 3:  # channels_first in keras.json
        x_train, x_test = x_train.transpose(0, 2, 3, 1), x_test.transpose(0, 2, 3, 1)
    return _images((x_train, y_train)), _images((x_test, y_test))


def _images(part: Part) -> Part:
    """Images with their channel axis (28x28 grey becomes 28x28x1), labels flat."""
    x, y = part
    return (x[..., np.newaxis] if x.ndim == 3 else x), np.asarray(y).reshape(-1)


# --- local copies in the format Keras caches ----------------------------------------------------


def _where(cfg) -> str:
    return cfg.path or f"the {cfg.source} data"


def _bad(path, problem: str, allowed: str) -> ConfigError:
    return ConfigError("data.path", f"{path}: {problem}", allowed)


def _existing(path: str, folder: bool, allowed: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError("data.path", f"no such file or folder: {path}", allowed)
    if folder and not p.is_dir():
        raise _bad(path, "is not a folder", allowed)
    if not folder and not p.is_file():
        raise _bad(path, "is not a file", allowed)
    return p


def _check_part(path, part: str, x: np.ndarray, y: np.ndarray, shape, allowed: str) -> Part:
    y = np.asarray(y).reshape(-1)
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape or len(x) != len(y):
        raise _bad(
            path,
            f"the {part} images have shape {x.shape} for {len(y)} labels",
            allowed,
        )
    if x.dtype != np.uint8 or not np.issubdtype(y.dtype, np.integer):
        raise _bad(path, f"the {part} arrays are {x.dtype} and {y.dtype}", allowed)
    return x, y


def read_mnist_npz(path: str) -> tuple[Part, Part]:
    """`mnist.npz` as Keras caches it: uint8 x_train (n, 28, 28), y_train (n,), x_test,
    y_test."""
    allowed = "a copy of Keras's mnist.npz: x_train, y_train, x_test, y_test as uint8"
    file = _existing(path, folder=False, allowed=allowed)
    try:
        with np.load(file, allow_pickle=False) as f:
            missing = [k for k in MNIST_KEYS if k not in f.files]
            if missing:
                raise _bad(
                    path,
                    f"no array {', '.join(missing)} (it has: {', '.join(f.files) or 'none'})",
                    allowed,
                )
            arrays = {k: f[k] for k in MNIST_KEYS}
    except ConfigError:
        raise
    except Exception as err:  # not a zip, truncated, or object arrays
        raise _bad(path, f"cannot read it as .npz ({_reason(err)})", allowed) from None
    parts = []
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        parts.append(_images(_check_part(path, f"x_{part}", x, y, (28, 28), allowed)))
    return parts[0], parts[1]


def read_fashion_mnist(path: str) -> tuple[Part, Part]:
    """A folder of the four gzipped IDX files Keras caches for Fashion-MNIST."""
    allowed = f"a folder like Keras's {FASHION_DIR}/ with {', '.join(_all(FASHION_FILES))}"
    folder = _existing(path, folder=True, allowed=allowed)
    parts = []
    for part, (images, labels) in FASHION_FILES.items():
        y = _read_idx(folder / labels, IDX_LABELS, allowed)
        x = _read_idx(folder / images, IDX_IMAGES, allowed)
        parts.append(_images(_check_part(folder / images, part, x, y, (28, 28), allowed)))
    return parts[0], parts[1]


def _all(files: dict) -> list[str]:
    return [name for pair in files.values() for name in pair]


def _read_idx(file: Path, magic: int, allowed: str) -> np.ndarray:
    """An IDX file of unsigned bytes: a big-endian magic number, one size per dimension,
    then the values."""
    if not file.is_file():
        raise ConfigError("data.path", f"no such file: {file}", allowed)
    try:
        with gzip.open(file, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as err:  # not gzip, cut short, or corrupt
        raise _bad(file, f"cannot read it as gzip ({_reason(err)})", allowed) from None
    dims = magic - 0x800
    head = 4 * (1 + dims)
    if len(data) < head or int.from_bytes(data[:4], "big") != magic:
        raise _bad(file, f"not an IDX file of {dims}-D unsigned bytes", allowed)
    shape = tuple(int.from_bytes(data[4 * i : 4 * i + 4], "big") for i in range(1, dims + 1))
    if len(data) - head != int(np.prod(shape)):
        raise _bad(
            file, f"holds {len(data) - head} values for the shape {shape} in its header", allowed
        )
    return np.frombuffer(data, np.uint8, offset=head).reshape(shape)


def read_cifar10(path: str) -> tuple[Part, Part]:
    """The folder cifar-10-batches-py Keras extracts (or the folder holding it): pickled
    batches data_batch_1 .. 5 and test_batch."""
    return _read_cifar(path, CIFAR10_DIR, CIFAR10_BATCHES, "labels")


def read_cifar100(path: str, label_mode: str = "fine") -> tuple[Part, Part]:
    """The folder cifar-100-python Keras extracts (or the folder holding it): the pickled
    `train` and `test`, labelled by `fine_labels` and `coarse_labels`."""
    return _read_cifar(path, CIFAR100_DIR, CIFAR100_BATCHES, f"{label_mode}_labels")


def _read_cifar(path: str, name: str, files: dict, label_key: str) -> tuple[Part, Part]:
    """Pickled batches, each a dict with `data` (n, 3072) uint8, channel by channel, and
    its labels; the images come back as (n, 32, 32, 3)."""
    allowed = f"the folder {name} with {', '.join(_all(files))}"
    folder = _existing(path, folder=True, allowed=allowed)
    if (folder / name).is_dir():  # Keras's cache folder around it
        folder = folder / name
    parts = []
    for part, names in files.items():
        batches = [_read_batch(folder / batch, allowed, label_key) for batch in names]
        x = np.concatenate([b[0] for b in batches])
        y = np.concatenate([b[1] for b in batches])
        parts.append(_check_part(folder, part, x, y, (32, 32, 3), allowed))
    return parts[0], parts[1]


def _read_batch(file: Path, allowed: str, label_key: str) -> Part:
    """One pickled CIFAR batch, read as keras.src.datasets.cifar.load_batch reads it."""
    if not file.is_file():
        raise ConfigError("data.path", f"no such file: {file}", allowed)
    try:
        with open(file, "rb") as f:
            batch = _ArraysOnly(f, encoding="bytes").load()
        batch = {k.decode("utf8") if isinstance(k, bytes) else k: v for k, v in batch.items()}
        data, labels = np.asarray(batch["data"]), np.asarray(batch[label_key])
        x = data.reshape(len(data), 3, 32, 32).transpose(0, 2, 3, 1)
    except KeyError as err:
        raise _bad(file, f"no {err} in the pickled batch", allowed) from None
    except Exception as err:  # truncated, not a pickle, not a dict, wrong size
        raise _bad(file, f"cannot read it as a CIFAR batch ({_reason(err)})", allowed) from None
    return x, labels


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays and plain values only, never other objects (Keras's own
    RestrictedUnpickler, whose import would pull in TensorFlow)."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def _reason(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return text or type(err).__name__
