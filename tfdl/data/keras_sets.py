"""The Keras data sets as sources: the images of MNIST, Fashion-MNIST, CIFAR-10 and
CIFAR-100, and the texts of IMDB and Reuters.

Each comes as Keras ships it: a training part and a test part, of raw uint8 pixels or of
texts (the word ids of Keras's files turned back into their words). Without `data.path`
the files come from Keras's cache (downloaded once, their hash checked); on a machine
without network and without the cached files the source says so in one line before Keras
would try to download. With `data.path` the source reads a local copy in the format Keras
caches, with numpy, gzip, zipfile, json and pickle alone (no TensorFlow).
"""

import gzip
import io
import json
import os
import pickle
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from tfdl.data.schema import Cifar10, Cifar100, FashionMnist, Imdb, Mnist, Reuters
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

SENTIMENTS = ("negative", "positive")  # IMDB's labels 0 and 1
# keras.datasets.reuters.get_label_names(), by label: Keras documents the order as the
# labels' ("indices matching training data"), as worked out in keras-team/keras#12072.
REUTERS_TOPICS = tuple(
    """
    cocoa grain veg-oil earn acq wheat copper housing money-supply coffee sugar trade
    reserves ship cotton carcass crude nat-gas cpi money-fx interest gnp meal-feed alum
    oilseed gold tin strategic-metal livestock retail ipi iron-steel rubber heat jobs lei
    bop zinc orange pet-chem dlr gas silver wpi hog lead
    """.split()
)

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
# The text sets' files, (name, Keras's hash) of the data and of its word index, as
# keras.datasets.<source>.load_data and get_word_index fetch them from TEXT_ORIGIN.
TEXT_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
TEXT_FILES = {
    "imdb": (
        ("imdb.npz", "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"),
        ("imdb_word_index.json", "bfafd718b763782e994055a2d397834f"),
    ),
    "reuters": (
        ("reuters.npz", "d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916"),
        ("reuters_word_index.json", "4d44cc38712099c9e383dc6e5f11a921"),
    ),
}
IMDB_KEYS = ("x_train", "y_train", "x_test", "y_test")
REUTERS_KEYS = ("x", "y")
# keras.datasets.imdb / reuters load_data shuffle with this seed (and Reuters then holds
# out its last 20% for test): the parts here are the rows Keras gives, in its order.
KERAS_TEXT_SEED = 113
REUTERS_TEST_SPLIT = 0.2
UNKNOWN = "[UNK]"  # the word of an id missing from the word index
MAX_RANK = 10_000_000  # bounds the lookup table by rank (Keras's word indexes rank 1..n)

# Where Keras downloads each set from: tfdl only probes it (Keras's own get_file fetches).
ORIGINS = {
    "mnist": "storage.googleapis.com",
    "fashion_mnist": "storage.googleapis.com",
    "cifar10": "www.cs.toronto.edu",
    "cifar100": "www.cs.toronto.edu",
    "imdb": "storage.googleapis.com",
    "reuters": "storage.googleapis.com",
}
PROBE_SECONDS = 3.0

Part = tuple[np.ndarray, np.ndarray]  # (uint8 images or str texts, labels) of one part


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


def load_imdb(cfg: Imdb, seed: int) -> Splits:
    if cfg.path:
        train, test = read_imdb(cfg.path)
    else:
        train, test = read_imdb(*_keras_text_files(cfg))
    return keras_splits(cfg, seed, train, test, SENTIMENTS, task="binary", input_dtype="string")


def load_reuters(cfg: Reuters, seed: int) -> Splits:
    if cfg.path:
        train, test = read_reuters(cfg.path)
    else:
        train, test = read_reuters(*_keras_text_files(cfg))
    return keras_splits(cfg, seed, train, test, REUTERS_TOPICS, input_dtype="string")


# --- splitting ---------------------------------------------------------------------------------


def keras_splits(
    cfg,
    seed: int,
    train: Part,
    test: Part,
    class_names,
    task: str = "multiclass",
    input_dtype: str = "float32",
) -> Splits:
    """Splits of a data set that comes as a training and a test part: `split: source` keeps
    the test part as the test split and takes the validation split from the training part;
    `split: random` pools both and splits them like any other source. The inputs are
    images (`input_dtype` float32, whatever narrower type they come in) or texts
    (`input_dtype` string: a 1-D object array of str, one text per sample)."""
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
        task=task,
        num_classes=k,
        class_names=tuple(class_names),
        input_dtype=input_dtype,
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


def _keras_text_files(cfg) -> tuple[str, str]:
    """The text set's data file and word index in Keras's cache, fetched (once, their hash
    checked) by keras.utils.get_file as keras.datasets.<source> fetches them, so they are
    then read by the same reader as a local copy."""
    (data, data_hash), (words, words_hash) = TEXT_FILES[cfg.source]
    copy = f"{data} (with {words} beside it)"
    cached(cfg, data, words, copy=copy)
    from keras.utils import get_file  # Keras (and TensorFlow) only here, when the data is needed

    try:
        return tuple(
            get_file(fname=name, origin=TEXT_ORIGIN + name, file_hash=file_hash)
            for name, file_hash in ((data, data_hash), (words, words_hash))
        )
    except Exception as err:  # a cached file with the wrong hash, and no network to refetch
        raise ConfigError(
            "data.path",
            f"{cfg.source} cannot be loaded from Keras's cache {keras_cache()} ({_reason(err)})",
            f"a local copy: data.path=/path/to/{copy}",
        ) from None


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


def read_imdb(path: str, word_index: str | None = None) -> tuple[Part, Part]:
    """`imdb.npz` as Keras caches it (x_train, y_train, x_test, y_test: one list of word
    ids per review, labels 0 negative and 1 positive), with its word index, by default
    `imdb_word_index.json` beside it. Each part comes back as texts, in the order
    keras.datasets.imdb.load_data gives it (shuffled with its seed)."""
    allowed = (
        "a copy of Keras's imdb.npz (x_train, y_train, x_test, y_test) with "
        "imdb_word_index.json beside it"
    )
    arrays, table = _read_text_files(path, word_index, "imdb", IMDB_KEYS, allowed)
    rng = np.random.RandomState(KERAS_TEXT_SEED)  # one generator for both parts, as Keras
    parts = []
    for part in ("train", "test"):
        texts, y = _texts(path, (f"x_{part}", f"y_{part}"), arrays, table, allowed)
        order = _keras_order(rng, len(y))
        parts.append((texts[order], y[order]))
    return parts[0], parts[1]


def read_reuters(path: str, word_index: str | None = None) -> tuple[Part, Part]:
    """`reuters.npz` as Keras caches it (x: one list of word ids per newswire, y: its topic
    0..45), with its word index, by default `reuters_word_index.json` beside it. Split into
    a training and a test part as keras.datasets.reuters.load_data splits it: shuffled
    with its seed, the last 20% held out for test."""
    allowed = "a copy of Keras's reuters.npz (x, y) with reuters_word_index.json beside it"
    arrays, table = _read_text_files(path, word_index, "reuters", REUTERS_KEYS, allowed)
    texts, y = _texts(path, REUTERS_KEYS, arrays, table, allowed)
    order = _keras_order(np.random.RandomState(KERAS_TEXT_SEED), len(y))
    texts, y = texts[order], y[order]
    cut = int(len(y) * (1 - REUTERS_TEST_SPLIT))  # Keras's own rounding
    return (texts[:cut], y[:cut]), (texts[cut:], y[cut:])


def _keras_order(rng: np.random.RandomState, n: int) -> np.ndarray:
    """The row order load_data shuffles a part into (rng.shuffle of np.arange)."""
    rows = np.arange(n)
    rng.shuffle(rows)
    return rows


def _read_text_files(path: str, word_index, source: str, keys, allowed: str):
    """The arrays `keys` of the .npz at `path`, and its word index (`word_index`, or the
    file of Keras's name beside `path`) as the table _decode looks words up in."""
    file = _existing(path, folder=False, allowed=allowed)
    index = Path(word_index) if word_index else file.parent / TEXT_FILES[source][1][0]
    if not index.is_file():
        raise ConfigError("data.path", f"no such file: {index} (the word index of {path})", allowed)
    return _read_ragged_npz(path, file, keys, allowed), _read_word_index(index, allowed)


def _read_ragged_npz(path: str, file: Path, keys, allowed: str) -> dict:
    """The arrays `keys` of an .npz whose arrays may be ragged (object arrays of lists)."""
    try:
        with zipfile.ZipFile(file) as archive:
            members = {n.removesuffix(".npy"): n for n in archive.namelist() if n.endswith(".npy")}
            missing = [k for k in keys if k not in members]
            if missing:
                raise _bad(
                    path,
                    f"no array {', '.join(missing)} (it has: {', '.join(members) or 'none'})",
                    allowed,
                )
            return {k: _read_npy(archive.read(members[k])) for k in keys}
    except ConfigError:
        raise
    except Exception as err:  # not a zip, truncated, a refused pickle
        raise _bad(path, f"cannot read it as .npz ({_reason(err)})", allowed) from None


def _read_npy(data: bytes) -> np.ndarray:
    """One .npy member. Ragged sequences are object arrays, which numpy stores as a pickle:
    np.load(allow_pickle=True) would run whatever a tampered file's pickle asks for, so
    they are unpickled as keras.src.datasets.npz_utils does, numpy arrays only."""
    stream = io.BytesIO(data)
    version = np.lib.format.read_magic(stream)
    if version[0] == 1:
        _, _, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version[0] in (2, 3):  # 3.0 differs from 2.0 only by a UTF-8 header
        _, _, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    if not dtype.hasobject:
        return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    return np.asarray(_ArraysOnly(stream).load())


def _read_word_index(file: Path, allowed: str) -> np.ndarray:
    """Keras's word index, a JSON object of word -> rank, as a table of the words by rank
    (UNKNOWN at ranks no word has, and in one last entry for ids beyond them all)."""
    try:
        with open(file, encoding="utf-8") as f:
            index = json.load(f)
        # type(): a JSON true is a bool, which Python counts as an int, yet is no rank.
        if not isinstance(index, dict) or not all(type(r) is int for r in index.values()):
            raise ValueError("not an object of words and integer ranks")
    except (OSError, ValueError, RecursionError) as err:  # unreadable, not JSON, not ranks
        raise _bad(file, f"cannot read it as a word index ({_reason(err)})", allowed) from None
    if not index:
        raise _bad(file, "holds no words", allowed)
    lo, hi = min(index.values()), max(index.values())
    if lo < 0 or hi > MAX_RANK:
        raise _bad(file, f"ranks its words {lo}..{hi}, not within 0..{MAX_RANK}", allowed)
    ranks = np.fromiter(index.values(), np.int64, count=len(index))
    table = np.full(ranks.max() + 2, UNKNOWN, object)
    table[ranks] = np.array(list(index), object)
    return table


def _texts(path: str, keys: tuple[str, str], arrays: dict, table, allowed: str) -> Part:
    """One part's texts and int64 labels from its arrays `keys` (word-id lists, labels)."""
    x, y = np.asarray(arrays[keys[0]]), np.asarray(arrays[keys[1]])
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise _bad(path, f"{keys[1]} is {y.dtype} of shape {y.shape}, not integer labels", allowed)
    sequences = _sequences(path, keys[0], x, allowed)
    if len(sequences) != len(y):
        raise _bad(path, f"{keys[0]} has {len(sequences)} samples for {len(y)} labels", allowed)
    return _decode(sequences, table), y.astype(np.int64)


def _sequences(path: str, key: str, x: np.ndarray, allowed: str) -> list[np.ndarray]:
    """The word-id lists of `x`: an object array of lists (ragged, as Keras stores them) or
    a 2-D array (all of one length, which numpy makes of equally long lists)."""
    if x.ndim == 2 and np.issubdtype(x.dtype, np.integer):
        return list(x.astype(np.int64))
    if x.ndim not in (1, 2) or x.dtype != object:
        raise _bad(path, f"{key} is {x.dtype} of shape {x.shape}, not lists of word ids", allowed)
    sequences = []
    for i, ids in enumerate(x.tolist() if x.ndim == 2 else x):
        try:
            ids = np.asarray(ids)
            ok = ids.ndim == 1 and (not ids.size or np.issubdtype(ids.dtype, np.integer))
        except ValueError:  # nested ragged lists
            ok = False
        if not ok:
            raise _bad(path, f"{key}[{i}] is not a list of integer word ids", allowed)
        sequences.append(ids.astype(np.int64))
    return sequences


def _decode(sequences: list[np.ndarray], table: np.ndarray) -> np.ndarray:
    """Each sequence's words joined by spaces, an id missing from the word index as UNKNOWN.
    The files hold the words' ranks themselves: keras.datasets' load_data adds
    `index_from` (3) to every id only to make room for its padding, start and
    out-of-vocabulary ids, and get_word_index's example undoes that by the same 3."""
    lengths = [len(s) for s in sequences]
    ids = np.concatenate(sequences) if sequences else np.zeros(0, np.int64)
    beyond = len(table) - 1  # the table's last entry: UNKNOWN
    tokens = table[np.where((ids >= 0) & (ids < beyond), ids, beyond)].tolist()
    ends = np.cumsum(lengths, dtype=np.int64).tolist()
    texts = np.empty(len(sequences), object)
    texts[:] = [" ".join(tokens[end - n : end]) for n, end in zip(lengths, ends, strict=True)]
    return texts


def _reason(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return text or type(err).__name__
