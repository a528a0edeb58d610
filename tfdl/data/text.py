"""Character corpora for language models: the course's Irish folk tunes in ABC notation.

The corpus is split by tune before any window is cut, so overlapping windows never carry
a training tune's text into the validation or test split. Each split's tunes are joined
with a blank line, as in the file, and cut into windows of `sequence_length` characters;
a window's target is the same window shifted by one character (next-character prediction).
"""

import hashlib
import re
from pathlib import Path

import numpy as np

from tfdl.data.schema import AbcTunes
from tfdl.data.spec import DataSpec, Splits
from tfdl.errors import ConfigError

# The MIT 6.S191 music-generation corpus (lab 1), as `mitdeeplearning.lab1` ships it.
CORPUS_URL = (
    "https://raw.githubusercontent.com/aamini/introtodeeplearning/master/"
    "mitdeeplearning/data/irish.abc"
)
CORPUS_SHA256 = "df3782d5f7b5a2f4c66aa7c13f13008d5f48757b3f5f51620cd6c1ceb2c53023"
CORPUS_FILE = "irish.abc"
# Where Keras caches downloads; None is Keras's own choice ($KERAS_HOME, else ~/.keras).
CACHE_DIR: str | None = None

TUNE_BREAK = "\n\n"
_BLANK_LINES = re.compile(r"\n[ \t]*\n\s*")
SPLITS = ("train", "val", "test")


def load_abc_tunes(cfg: AbcTunes, seed: int) -> Splits:
    """Read the corpus, split it by tune (deterministic in `seed`), cut next-character windows."""
    text, where = (read_corpus(cfg.path), cfg.path) if cfg.path else (fetch_corpus(), "corpus")
    vocabulary = sorted(set(text))
    if len(vocabulary) < 2:
        raise ConfigError(
            "data.path",
            f"{where} has {len(vocabulary)} distinct character(s), nothing to predict",
            "a corpus needs at least two distinct characters",
        )
    index = {c: i for i, c in enumerate(vocabulary)}
    tunes = split_tunes(text)
    parts = dict(zip(SPLITS, _split_by_tune(tunes, cfg, seed), strict=True))
    length = cfg.sequence_length
    stride = cfg.stride or max(1, length // 2)
    windows = {}
    for name, part in parts.items():
        ids = encode(TUNE_BREAK.join(part), index)
        if len(ids) < length + 1:
            raise ConfigError(
                "data.sequence_length",
                f"the {name} split ({len(part)} tunes, {len(ids)} characters) is too short for "
                f"one window of {length} characters and its next-character target",
                f"a sequence_length below {len(ids)}, or more tunes in the {name} split",
            )
        windows[name] = make_windows(ids, length, stride)
    spec = DataSpec(
        input_shape=(length,),
        task="language_model",
        num_classes=len(vocabulary),
        vocabulary=tuple(vocabulary),
        input_dtype="int32",
    )
    info = {f"n_{name}": len(windows[name][0]) for name in SPLITS}
    info |= {f"tunes_{name}": len(parts[name]) for name in SPLITS}
    info |= {f"chars_{name}": len(TUNE_BREAK.join(parts[name])) for name in SPLITS}
    info |= {"vocabulary_size": len(vocabulary), "stride": stride, "seed": int(seed)}
    info["corpus_sha256"] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = (windows[n] for n in SPLITS)
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test, spec=spec, info=info)


def read_corpus(path: str) -> str:
    """The text of a user's corpus file; a ConfigError on `data.path` when it cannot serve."""
    allowed = "a path to a non-empty UTF-8 text file of tunes in ABC notation"
    file = Path(path).expanduser()
    if not file.is_file():
        problem = f"{path} is not a file" if file.exists() else f"no such file: {path}"
        raise ConfigError("data.path", problem, allowed)
    try:
        text = file.read_text(encoding="utf-8")  # universal newlines: \r\n reads as \n
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError("data.path", f"cannot read {path}: {err}", allowed) from None
    if not text.strip():
        raise ConfigError("data.path", f"{path} is empty", allowed)
    return text


def fetch_corpus() -> str:
    """The course's corpus: downloaded once by Keras, its sha256 checked, then read from cache.

    Keras finds `irish.abc` in its cache (`CACHE_DIR`/datasets) and checks the hash; it
    downloads from `CORPUS_URL` only when the file is missing or does not match.
    """
    import keras  # only here: a path-given corpus never needs Keras (nor TensorFlow)

    try:
        path = keras.utils.get_file(
            CORPUS_FILE,
            origin=CORPUS_URL,
            file_hash=CORPUS_SHA256,
            hash_algorithm="sha256",
            cache_subdir="datasets",
            cache_dir=CACHE_DIR,
        )
    except Exception as err:  # offline, blocked, or a download with the wrong hash
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(
            "data.path",
            f"the ABC tunes corpus is not cached and cannot be downloaded ({reason})",
            "a path to an ABC text file, or network access for the first download",
        ) from None
    return Path(path).read_text(encoding="utf-8")


def split_tunes(text: str) -> list[str]:
    """The tunes of an ABC text: blocks separated by blank lines.

    An ABC tune opens with its `X:` reference number; in a file whose tunes do, a block
    without one continues the tune before it (a blank line inside a tune), so it stays with
    that tune and in the same split.
    """
    blocks = [b.strip("\n") for b in _BLANK_LINES.split(text.strip("\n")) if b.strip()]
    if not any(b.startswith("X:") for b in blocks):
        return blocks
    tunes = []
    for block in blocks:
        if block.startswith("X:") or not tunes:
            tunes.append(block)
        else:
            tunes[-1] += TUNE_BREAK + block
    return tunes


def _split_by_tune(tunes: list[str], cfg: AbcTunes, seed: int):
    """Train, validation and test tunes: a seeded shuffle, then at least one tune each."""
    n = len(tunes)
    n_test = max(1, round(cfg.test_fraction * n))
    n_val = max(1, round(cfg.val_fraction * n))
    if n - n_test - n_val < 1:
        raise ConfigError(
            "data.val_fraction",
            f"cannot split {n} tunes into train/val/test with val_fraction="
            f"{cfg.val_fraction:g}, test_fraction={cfg.test_fraction:g}: every split needs a tune",
            "at least 3 tunes separated by blank lines, and fractions leaving train a tune",
        )
    order = np.random.default_rng(seed).permutation(n)
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    return [[tunes[i] for i in part] for part in (train, val, test)]


def encode(text: str, index: dict[str, int]) -> np.ndarray:
    """Character ids of `text` (int32), one per character."""
    return np.fromiter(map(index.__getitem__, text), dtype=np.int32, count=len(text))


def decode(ids, vocabulary) -> str:
    """The text of a sequence of character ids."""
    return "".join(vocabulary[int(i)] for i in ids)


def make_windows(ids: np.ndarray, length: int, stride: int):
    """Inputs x = ids[i : i+L] and targets y = ids[i+1 : i+L+1] for i = 0, stride, 2*stride..."""
    spans = np.lib.stride_tricks.sliding_window_view(ids, length + 1)[::stride]
    return np.ascontiguousarray(spans[:, :-1]), np.ascontiguousarray(spans[:, 1:])
