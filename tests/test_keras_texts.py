"""The Keras text data sets (IMDB, Reuters) as sources, from small files in Keras's format.

No test here touches the network: every file is written by the test, and the cache Keras
would read is an empty folder (or holds those small files).
"""

import json
import pickle
import zipfile

import numpy as np
import pytest

from tfdl.data import keras_sets
from tfdl.data.schema import Imdb, Reuters
from tfdl.data.split import load_splits
from tfdl.errors import ConfigError

CONFIGS = {"imdb": Imdb, "reuters": Reuters}
WORDS = ("the", "a", "film", "was", "good", "bad", "plot", "oil", "wheat", "price", "rose")
N_TRAIN, N_TEST, N_WIRES = 40, 20, 50  # IMDB's two parts; Reuters's one array
REUTERS_CLASSES = 4  # of its 46: enough to stratify a few dozen wires


def splits_of(source, seed=0, **fields):
    return load_splits(CONFIGS[source](source=source, **fields), seed)


# --- files in Keras's format ---------------------------------------------------------------------


def texts(first_id, n, seed=0):
    """`n` texts whose first word names a sample id (to follow samples through the split),
    then a few common words; an empty text among them."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(first_id, first_id + n):
        words = rng.choice(WORDS, size=rng.integers(0, 8)).tolist()
        out.append(" ".join([f"s{i}", *words]))
    return out


def ids_of(x) -> list[int]:
    return [int(text.split()[0][1:]) for text in x]


def word_index(*parts) -> dict:
    """Words ranked 1.. as Keras's word index ranks them: the common words, then the ids."""
    names = [text.split()[0] for part in parts for text in part]
    return {w: rank for rank, w in enumerate([*WORDS, *names], start=1)}


def encode(part, index) -> np.ndarray:
    """Each text's word ranks as a list of ints, in a ragged object array as Keras stores
    them (numpy would make equally long lists a 2-D array)."""
    x = np.empty(len(part), object)
    x[:] = [[index[w] for w in text.split()] for text in part]
    return x


def imdb_parts():
    """The training part (ids 0..) and the test part (ids 1000..), labels alternating."""
    train, test = texts(0, N_TRAIN), texts(1000, N_TEST, seed=1)
    return (train, np.arange(N_TRAIN) % 2), (test, np.arange(N_TEST) % 2)


def reuters_wires():
    return texts(0, N_WIRES, seed=2), np.arange(N_WIRES) % REUTERS_CLASSES


def write_imdb(folder, **arrays):
    """imdb.npz and imdb_word_index.json as keras.datasets.imdb caches them."""
    (train, y_train), (test, y_test) = imdb_parts()
    index = word_index(train, test)
    content = {"x_train": encode(train, index), "y_train": y_train}
    content |= {"x_test": encode(test, index), "y_test": y_test}
    np.savez(folder / "imdb.npz", **{**content, **arrays})
    (folder / "imdb_word_index.json").write_text(json.dumps(index))
    return folder / "imdb.npz"


def write_reuters(folder, **arrays):
    """reuters.npz and reuters_word_index.json as keras.datasets.reuters caches them."""
    wires, y = reuters_wires()
    index = word_index(wires)
    np.savez(folder / "reuters.npz", **{"x": encode(wires, index), "y": y, **arrays})
    (folder / "reuters_word_index.json").write_text(json.dumps(index))
    return folder / "reuters.npz"


WRITERS = {"imdb": write_imdb, "reuters": write_reuters}


def keras_order(n, rng):
    rows = np.arange(n)
    rng.shuffle(rows)
    return rows


def expected_parts(source):
    """(texts, labels) of the training and the test part in the order Keras's load_data
    gives them: each IMDB part shuffled by one generator seeded 113; Reuters shuffled by
    it, its last 20% the test part."""
    rng = np.random.RandomState(113)
    if source == "imdb":
        parts = []
        for x, y in imdb_parts():
            order = keras_order(len(y), rng)
            parts.append(([x[i] for i in order], y[order]))
        return parts
    x, y = reuters_wires()
    order = keras_order(len(y), rng)
    x, y, cut = [x[i] for i in order], y[order], int(0.8 * len(y))
    return [(x[:cut], y[:cut]), (x[cut:], y[cut:])]


# --- texts, labels, classes ----------------------------------------------------------------------


@pytest.mark.parametrize("source", ["imdb", "reuters"])
def test_a_local_copy_loads_as_the_texts_encoded(source, tmp_path):
    path = WRITERS[source](tmp_path)
    s = splits_of(source, path=str(path))
    (train, y_train), (test, y_test) = expected_parts(source)
    for x, y in [(s.x_train, s.y_train), (s.x_val, s.y_val), (s.x_test, s.y_test)]:
        assert x.dtype == object and x.ndim == 1 and all(type(t) is str for t in x)
        assert y.dtype == np.int64 and len(x) == len(y) > 0
    assert s.spec.input_shape == () and s.spec.input_dtype == "string"
    # The test part whole, in Keras's order; the training part split into train and val.
    assert s.x_test.tolist() == test
    np.testing.assert_array_equal(s.y_test, y_test)
    assert sorted([*s.x_train, *s.x_val]) == sorted(train)
    label = dict(zip(train, y_train, strict=True))
    assert [label[t] for t in s.x_val] == s.y_val.tolist()  # labels travel with their texts
    assert s.info["split"] == "source" and s.info["n_test"] == len(test)


def test_imdb_is_binary_with_its_sentiments(tmp_path):
    s = splits_of("imdb", path=str(write_imdb(tmp_path)))
    assert s.spec.task == "binary" and s.spec.num_classes == 2
    assert s.spec.class_names == ("negative", "positive")
    assert s.info["n_test"] == N_TEST and s.info["n_train"] + s.info["n_val"] == N_TRAIN


def test_reuters_is_multiclass_over_its_46_topics(tmp_path):
    s = splits_of("reuters", path=str(write_reuters(tmp_path)))
    assert s.spec.task == "multiclass" and s.spec.num_classes == 46
    assert s.spec.class_names == keras_sets.REUTERS_TOPICS
    assert s.spec.class_names[:5] == ("cocoa", "grain", "veg-oil", "earn", "acq")
    assert s.spec.class_names[-1] == "lead" and len(set(s.spec.class_names)) == 46
    assert s.info["n_test"] == N_WIRES - int(0.8 * N_WIRES)


def test_reuters_topics_are_keras_own_label_names():
    from keras.src.datasets import reuters

    assert keras_sets.REUTERS_TOPICS == tuple(reuters.get_label_names())


@pytest.mark.parametrize("source", ["imdb", "reuters"])
def test_keras_own_loaders_agree(source, tmp_path, monkeypatch):
    """The same files through keras.datasets' load_data (its download pointed at them),
    decoded as get_word_index's example decodes (ids 3 past the ranks, after a start id),
    give the same texts and labels, from the files Keras names with the same origins and
    hashes."""
    from keras.src.datasets import imdb, reuters

    module = {"imdb": imdb, "reuters": reuters}[source]
    fetched = []

    def get_file(fname=None, origin=None, file_hash=None, **kw):
        fetched.append((fname, origin, file_hash))
        return str(tmp_path / fname)

    monkeypatch.setattr(module, "get_file", get_file)
    path = WRITERS[source](tmp_path)
    ours = getattr(keras_sets, f"read_{source}")(str(path))
    # num_words past every id: without it Keras counts its largest id out of vocabulary.
    theirs = module.load_data(num_words=10**6)
    word = {rank + 3: w for w, rank in module.get_word_index().items()}
    for (x, y), (kx, ky) in zip(ours, theirs, strict=True):
        assert x.tolist() == [" ".join(word[i] for i in ids[1:]) for ids in kx]
        np.testing.assert_array_equal(y, ky)
    files = keras_sets.TEXT_FILES[source]
    assert fetched == [(name, keras_sets.TEXT_ORIGIN + name, h) for name, h in files]


def test_ids_missing_from_the_word_index_become_unk(tmp_path):
    (train, _), (test, _) = imdb_parts()
    index = word_index(train, test)
    x = np.empty(2, object)
    x[:] = [[index["the"], 0, index["good"]], [len(index) + 5, -1, index["film"]]]
    path = write_imdb(tmp_path, x_test=x, y_test=np.array([0, 1]))
    index.pop("good")
    (tmp_path / "imdb_word_index.json").write_text(json.dumps(index))
    _, (texts, _) = keras_sets.read_imdb(str(path))
    assert sorted(texts.tolist()) == ["[UNK] [UNK] film", "the [UNK] [UNK]"]


def test_equally_long_lists_load_too(tmp_path):
    """numpy stores equally long lists as a 2-D array, of objects or of integers."""
    for x in (np.array([[1, 2], [3, 4]], object), np.array([[1, 2], [3, 4]])):
        path = write_imdb(tmp_path, x_test=x, y_test=np.array([0, 1]))
        _, (texts, _) = keras_sets.read_imdb(str(path))
        assert sorted(texts.tolist()) == ["film was", "the a"]


def test_files_in_keras_cache_are_read_without_data_path(tmp_path, monkeypatch):
    """Without data.path the files come through keras.utils.get_file (here pointed at the
    cache folder) and are read like a local copy; nothing probes the network."""
    import keras
    from keras.src.backend import config

    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path))
    (tmp_path / "datasets").mkdir()
    write_reuters(tmp_path / "datasets")
    fetched = []

    def get_file(fname=None, origin=None, file_hash=None, **kw):
        fetched.append(fname)
        return str(tmp_path / "datasets" / fname)

    monkeypatch.setattr(keras.utils, "get_file", get_file)
    monkeypatch.setattr(keras_sets, "reachable", lambda host: pytest.fail("probed the network"))
    s = splits_of("reuters")
    assert fetched == ["reuters.npz", "reuters_word_index.json"]
    assert s.x_test.tolist() == expected_parts("reuters")[1][0]


# --- the split ------------------------------------------------------------------------------------


def test_source_split_is_the_same_for_a_seed_and_another_for_another(tmp_path):
    path = str(write_imdb(tmp_path))
    a, b, c = (splits_of("imdb", seed, path=path, val_fraction=0.25) for seed in (1, 1, 2))
    assert a.x_train.tolist() == b.x_train.tolist() and a.x_val.tolist() == b.x_val.tolist()
    np.testing.assert_array_equal(a.y_val, b.y_val)
    assert set(c.x_val) != set(a.x_val)  # another seed, another validation split
    assert c.x_test.tolist() == a.x_test.tolist()  # the test part never moves
    assert len(a.x_val) == N_TRAIN // 4 and np.bincount(a.y_val).tolist() == [5, 5]


def test_random_split_pools_both_parts(tmp_path):
    path = str(write_imdb(tmp_path))
    a, b, c = (
        splits_of("imdb", seed, path=path, split="random", test_fraction=0.25) for seed in (3, 3, 4)
    )
    ids = [ids_of(x) for x in (a.x_train, a.x_val, a.x_test)]
    assert sorted(sum(ids, [])) == [*range(N_TRAIN), *range(1000, 1000 + N_TEST)]
    assert len(ids[2]) == 0.25 * (N_TRAIN + N_TEST)
    assert min(ids[2]) < 1000 <= max(ids[2])  # test drawn from both parts
    assert a.x_test.tolist() == b.x_test.tolist() and set(c.x_test) != set(a.x_test)
    assert a.info["split"] == "random"


def test_max_samples_draws_from_the_training_part(tmp_path):
    path = str(write_reuters(tmp_path))
    n_train = int(0.8 * N_WIRES)

    def drawn(seed, **fields):
        s = splits_of("reuters", seed, path=path, val_fraction=0.25, **fields)
        return s, set(ids_of(s.x_train)) | set(ids_of(s.x_val))

    s, ids = drawn(0, max_samples=24)
    train, y_train = expected_parts("reuters")[0]
    assert len(ids) == 24 and ids <= set(ids_of(train)) and s.info["n_test"] == N_WIRES - n_train
    counts = np.bincount(np.concatenate([s.y_train, s.y_val]))
    assert np.abs(counts - 24 * np.bincount(y_train) / n_train).max() < 1  # stratified
    assert drawn(0, max_samples=24)[1] == ids and drawn(1, max_samples=24)[1] != ids
    pooled = splits_of("reuters", path=path, max_samples=32, split="random", test_fraction=0.25)
    assert pooled.info["n_train"] + pooled.info["n_val"] + pooled.info["n_test"] == 32


# --- errors: one line, naming the setting and the file -------------------------------------------


@pytest.mark.parametrize("source", ["imdb", "reuters"])
def test_offline_without_cache_is_one_line_naming_the_files_and_data_path(source, empty_cache):
    with pytest.raises(ConfigError) as err:
        splits_of(source)
    line = err.value.line()
    assert len(line.splitlines()) == 1 and err.value.field == "data.path"
    assert line == (
        f"error: data.path: {source} is not downloaded: no {empty_cache / f'{source}.npz'} in "
        "Keras's cache and no network to fetch it; allowed: a local copy: data.path=/path/to/"
        f"{source}.npz (with {source}_word_index.json beside it)"
    )


def test_offline_with_half_the_files_cached_names_the_missing_one(empty_cache):
    empty_cache.mkdir()
    write_imdb(empty_cache)
    (empty_cache / "imdb_word_index.json").unlink()
    with pytest.raises(ConfigError) as err:
        splits_of("imdb")
    assert f"no {empty_cache / 'imdb_word_index.json'} in Keras's cache" in err.value.line()


def test_a_failed_download_is_one_line_naming_data_path(empty_cache, monkeypatch):
    import keras

    def get_file(fname=None, **kw):
        raise Exception(f"URL fetch failure on {kw['origin']}: 403 -- Forbidden\nmore")

    monkeypatch.setattr(keras_sets, "reachable", lambda host: True)
    monkeypatch.setattr(keras.utils, "get_file", get_file)
    with pytest.raises(ConfigError) as err:
        splits_of("reuters")
    line = err.value.line()
    assert err.value.field == "data.path" and len(line.splitlines()) == 1
    assert line.startswith(
        f"error: data.path: reuters cannot be loaded from Keras's cache {empty_cache}"
    )
    assert "403" in line and "data.path=/path/to/reuters.npz" in line


def _no_such_file(tmp_path):
    return "imdb", tmp_path / "nowhere.npz", "nowhere.npz"


def _a_folder(tmp_path):
    write_imdb(tmp_path)
    return "imdb", tmp_path, str(tmp_path)


def _no_word_index(tmp_path):
    path = write_reuters(tmp_path)
    (tmp_path / "reuters_word_index.json").unlink()
    return "reuters", path, "reuters_word_index.json"


def _word_index(name, source, text):
    """A case named `name`: `source`'s files with its word index replaced by `text`."""

    def case(tmp_path):
        path = WRITERS[source](tmp_path)
        (tmp_path / f"{source}_word_index.json").write_text(text)
        return source, path, f"{source}_word_index.json"

    case.__name__ = name
    return case


_word_index_not_json = _word_index("word_index_not_json", "imdb", "{'the': 1")
_word_index_not_ranks = _word_index("word_index_not_ranks", "imdb", json.dumps({"the": "1"}))
_word_index_a_list = _word_index("word_index_a_list", "reuters", json.dumps(["the", "a"]))
_word_index_empty = _word_index("word_index_empty", "reuters", "{}")
_word_index_huge_rank = _word_index(
    "word_index_huge_rank", "reuters", json.dumps({"the": 1, "a": 10**30})
)


def _missing_key(tmp_path):
    wires, y = reuters_wires()
    write_reuters(tmp_path)
    np.savez(tmp_path / "reuters.npz", x=encode(wires, word_index(wires)), labels=y)
    return "reuters", tmp_path / "reuters.npz", "reuters.npz"


def _not_npz(tmp_path):
    path = write_imdb(tmp_path)
    path.write_text("hello")
    return "imdb", path, "imdb.npz"


def _truncated_npz(tmp_path):
    path = write_imdb(tmp_path)
    path.write_bytes(path.read_bytes()[:1500])
    return "imdb", path, "imdb.npz"


def _float_sequences(tmp_path):
    x = np.empty(N_TEST, object)
    x[:] = [[1.5, 2.0]] * N_TEST
    return "imdb", write_imdb(tmp_path, x_test=x), "imdb.npz"


def _strings_not_ids(tmp_path):
    x = np.array(["the film"] * N_WIRES)
    return "reuters", write_reuters(tmp_path, x=x), "reuters.npz"


def _float_labels(tmp_path):
    return "imdb", write_imdb(tmp_path, y_train=np.full(N_TRAIN, 0.5)), "imdb.npz"


def _too_few_labels(tmp_path):
    return "reuters", write_reuters(tmp_path, y=np.zeros(N_WIRES - 1, int)), "reuters.npz"


def _label_out_of_range(tmp_path):
    y = np.arange(N_TRAIN) % 2
    y[3] = 2  # IMDB has two classes
    return "imdb", write_imdb(tmp_path, y_train=y), "imdb.npz"


def _malicious_pickle(tmp_path):
    """An .npz whose object array's pickle would call print: it must never run."""

    class Gadget:
        def __reduce__(self):
            return (print, ("ran",))

    path = write_reuters(tmp_path)
    with zipfile.ZipFile(path) as archive:
        y = archive.read("y.npy")
    header = b"\x93NUMPY\x01\x00" + (118).to_bytes(2, "little")
    header += b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }".ljust(117) + b"\n"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", header + pickle.dumps(Gadget()))
        archive.writestr("y.npy", y)
    return "reuters", path, "reuters.npz"


BROKEN = [
    _no_such_file,
    _a_folder,
    _no_word_index,
    _word_index_not_json,
    _word_index_not_ranks,
    _word_index_a_list,
    _word_index_empty,
    _word_index_huge_rank,
    _missing_key,
    _not_npz,
    _truncated_npz,
    _float_sequences,
    _strings_not_ids,
    _float_labels,
    _too_few_labels,
    _label_out_of_range,
    _malicious_pickle,
]


@pytest.mark.parametrize("make", BROKEN, ids=lambda f: f.__name__.strip("_"))
def test_a_malformed_copy_is_one_line_naming_the_file(make, tmp_path, capsys):
    source, path, name = make(tmp_path)
    with pytest.raises(ConfigError) as err:
        splits_of(source, path=str(path))
    line = err.value.line()
    assert err.value.field == "data.path" and len(line.splitlines()) == 1
    assert line.startswith("error: data.path: ") and name in line, line
    assert "ran" not in capsys.readouterr().out  # nothing in a pickle ever runs
