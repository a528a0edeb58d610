"""The ABC tunes corpus, the character language model and sampling text from it."""

import hashlib
import re
import subprocess
import sys

import keras
import mlflow
import numpy as np
import pytest
import tensorflow as tf

from tfdl import train
from tfdl.config import validate
from tfdl.data import text
from tfdl.data.schema import AbcTunes
from tfdl.data.spec import DataSpec
from tfdl.data.split import load_splits
from tfdl.errors import ConfigError
from tfdl.layers import ScheduledDropout
from tfdl.models import build_model
from tfdl.models.language import build_char_lm, generate_text
from tfdl.models.schema import ARCHITECTURES

N_TUNES = 12
TITLE = re.compile(r"T:(Reel \d\d)\n")


def tune(i: int) -> str:
    """A small tune in ABC notation with a title no other tune has."""
    rng = np.random.default_rng(i)
    bars = ["".join(rng.choice(list("ABCDEFGabcdefg"), 8)) for _ in range(8)]
    body = "|".join(bars[:4]) + "|!\n" + "|".join(bars[4:]) + ":|"
    return f"X:{i}\nT:Reel {i:02d}\nM:4/4\nL:1/8\nK:D Major\n{body}"


TUNES = [tune(i) for i in range(N_TUNES)]
CORPUS = "\n\n".join(TUNES) + "\n"


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "tunes.abc"
    path.write_text(CORPUS)
    return path


def load(path, **fields):
    cfg = AbcTunes(source="abc_tunes", path=str(path), **{"sequence_length": 24, **fields})
    return text.load_abc_tunes(cfg, cfg.seed if cfg.seed is not None else 0)


def decode(ids, spec):
    return text.decode(ids, spec.vocabulary)


def titles(x, spec) -> set[str]:
    return {t for row in x for t in TITLE.findall(decode(row, spec))}


def one_line_error(err, field):
    line = str(err.value)
    assert err.value.field == field and line.startswith(f"error: {field}: ") and "\n" not in line
    return line


# ------------------------------------------------------------------------------- the corpus


def test_vocabulary_ids_and_windows_round_trip(corpus):
    splits = load(corpus, stride=24)
    spec = splits.spec
    assert spec.vocabulary == tuple(sorted(set(CORPUS))) and spec.num_classes == len(
        spec.vocabulary
    )
    assert spec.task == "language_model" and spec.input_shape == (24,)
    assert spec.input_dtype == "int32" and splits.x_train.dtype == np.int32
    # stride = window: the windows laid end to end are the split's text, whole tunes joined by
    # blank lines (the last piece may be cut off by the final window)
    joined = decode(splits.x_train.ravel(), spec)
    pieces = joined.split("\n\n")
    assert all(p in TUNES for p in pieces[:-1]) and len(pieces) > 2
    assert any(t.startswith(pieces[-1]) for t in TUNES)


def test_targets_are_the_inputs_shifted_by_one(corpus):
    splits = load(corpus)
    for x, y in ((splits.x_train, splits.y_train), (splits.x_test, splits.y_test)):
        assert x.shape == y.shape and x.shape[1] == 24
        np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    # the target's last character is the one after the window: the next window shows it
    stride = splits.info["stride"]
    assert stride == 12
    np.testing.assert_array_equal(splits.x_train[1, : 24 - stride], splits.x_train[0, stride:])
    np.testing.assert_array_equal(splits.x_train[1, 24 - stride], splits.y_train[0, -1])


def test_no_tune_is_in_two_splits(corpus):
    splits = load(corpus)
    spec, info = splits.spec, splits.info
    train_t, val_t, test_t = (
        titles(x, spec) for x in (splits.x_train, splits.x_val, splits.x_test)
    )
    assert not (train_t & val_t) and not (train_t & test_t) and not (val_t & test_t)
    assert train_t | val_t | test_t == {f"Reel {i:02d}" for i in range(N_TUNES)}
    assert (len(train_t), len(val_t), len(test_t)) == (8, 2, 2)
    assert (info["tunes_train"], info["tunes_val"], info["tunes_test"]) == (8, 2, 2)
    assert info["vocabulary_size"] == len(spec.vocabulary)
    assert info["n_train"] == len(splits.x_train) and info["n_test"] == len(splits.x_test)
    joined = sum(len(TUNES[int(t[-2:])]) for t in train_t) + len("\n\n") * (len(train_t) - 1)
    assert info["chars_train"] == joined


def test_stride_sets_the_number_of_windows(corpus):
    for stride in (1, 5, 24):
        splits = load(corpus, stride=stride)
        chars = splits.info["chars_train"]
        assert len(splits.x_train) == (chars - 24 - 1) // stride + 1
        np.testing.assert_array_equal(splits.x_train[1, :-stride], splits.x_train[0, stride:])


def test_the_seed_decides_the_split(corpus):
    a, b, c = load(corpus, seed=3), load(corpus, seed=3), load(corpus, seed=4)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_val, b.y_val)
    assert titles(a.x_test, a.spec) != titles(c.x_test, c.spec)


def test_load_splits_takes_the_splits_as_they_are(corpus):
    cfg = AbcTunes(source="abc_tunes", path=str(corpus), sequence_length=24)
    splits = load_splits(cfg, seed=3)  # no seed in the section: the training seed
    np.testing.assert_array_equal(splits.x_train, load(corpus, seed=3).x_train)


def test_a_blank_line_inside_a_tune_keeps_it_whole():
    abc = "X:1\nT:One\nK:D\nabc|!\n\ndef|\n\n\nX:2\nT:Two\nK:G\n  \nGAB|\n"
    assert text.split_tunes(abc) == ["X:1\nT:One\nK:D\nabc|!\n\ndef|", "X:2\nT:Two\nK:G\n\nGAB|"]
    assert text.split_tunes("first\n\n\nsecond\n \nthird") == ["first", "second", "third"]


def test_loading_a_path_does_not_import_tensorflow(corpus):
    code = (
        "import sys\n"
        "from tfdl.data.schema import AbcTunes\n"
        "from tfdl.data.text import load_abc_tunes\n"
        f"cfg = AbcTunes(source='abc_tunes', path={str(corpus)!r}, sequence_length=24)\n"
        "load_abc_tunes(cfg, 0)\n"
        "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("content", "field", "words"),
    [
        (None, "data.path", "no such file"),
        ("", "data.path", "is empty"),
        ("\n \n\n", "data.path", "is empty"),
        (b"X:1\n\xff\xfe\n", "data.path", "cannot read"),
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "data.path", "two distinct characters"),
        ("\n\n".join(TUNES[:2]), "data.val_fraction", "cannot split 2 tunes"),
    ],
    ids=["missing", "empty", "blank", "not-utf8", "one-character", "two-tunes"],
)
def test_a_corpus_that_cannot_serve_is_a_config_error(tmp_path, content, field, words):
    path = tmp_path / "corpus.abc"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as err:
        load(path)
    assert words in one_line_error(err, field)


def test_a_directory_or_a_too_long_window_is_a_config_error(tmp_path, corpus):
    with pytest.raises(ConfigError) as err:
        load(tmp_path)
    assert "is not a file" in one_line_error(err, "data.path")
    with pytest.raises(ConfigError) as err:
        load(corpus, sequence_length=400)  # longer than the validation split's two tunes
    assert "too short for one window" in one_line_error(err, "data.sequence_length")


# ------------------------------------------------------------------- the downloaded corpus


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty Keras cache, and an origin that fails at once without touching the network."""
    cache = tmp_path / "keras"
    monkeypatch.setattr(text, "CACHE_DIR", str(cache))
    monkeypatch.setattr(text, "CORPUS_URL", (tmp_path / "offline" / "irish.abc").as_uri())
    return cache


def test_without_a_path_or_a_cached_copy_the_corpus_is_a_config_error(offline_cache):
    cfg = AbcTunes(source="abc_tunes")
    with pytest.raises(ConfigError) as err:
        load_splits(cfg, seed=0)
    line = one_line_error(err, "data.path")
    assert "not cached and cannot be downloaded" in line
    assert "allowed: a path to an ABC text file, or network access for the first download" in line
    assert not (offline_cache / "datasets" / "irish.abc").exists()  # no partial file left


def test_a_cached_copy_is_read_when_its_hash_matches(offline_cache, monkeypatch):
    cached = offline_cache / "datasets" / "irish.abc"
    cached.parent.mkdir(parents=True)
    cached.write_text(CORPUS)
    monkeypatch.setattr(text, "CORPUS_SHA256", hashlib.sha256(CORPUS.encode()).hexdigest())
    splits = text.load_abc_tunes(AbcTunes(source="abc_tunes", sequence_length=24), 0)
    assert splits.spec.vocabulary == tuple(sorted(set(CORPUS)))
    # a copy that does not match the hash is fetched again, which fails offline
    cached.write_text(CORPUS.replace("Reel", "Jig"))
    with pytest.raises(ConfigError) as err:
        text.load_abc_tunes(AbcTunes(source="abc_tunes", sequence_length=24), 0)
    assert "cannot be downloaded" in one_line_error(err, "data.path")


# ------------------------------------------------------------------------------ the model

SPEC = DataSpec(
    input_shape=(16,),
    task="language_model",
    num_classes=len(set(CORPUS)),
    vocabulary=tuple(sorted(set(CORPUS))),
    input_dtype="int32",
)
V = len(SPEC.vocabulary)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_char_lm_gives_next_character_probabilities_at_every_step(cell):
    keras.utils.set_random_seed(0)
    model = build_char_lm(SPEC, embedding_dim=8, cell=cell, units=(12, 6), dropout=0.2)
    layer = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[cell]
    rnns = [la for la in model.layers if isinstance(la, keras.layers.RNN)]
    assert all(type(la) is layer and la.return_sequences for la in rnns)
    assert [la.units for la in rnns] == [12, 6]
    assert model.get_layer("embedding").output_dim == 8
    assert (
        sum(isinstance(la, ScheduledDropout) and la.initial_rate == 0.2 for la in model.layers) == 2
    )
    for steps in (1, 7, 30):  # any length: the window size only bounds training
        ids = np.random.default_rng(steps).integers(0, V, (3, steps)).astype("int32")
        probs = model(ids, training=False).numpy()
        assert probs.shape == (3, steps, V)
        np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)


def test_char_lm_defaults_follow_the_schema():
    model = build_model(ARCHITECTURES["char_lm"](arch="char_lm"), SPEC)
    (rnn,) = [la for la in model.layers if isinstance(la, keras.layers.RNN)]
    assert isinstance(rnn, keras.layers.LSTM) and rnn.units == 256
    assert model.get_layer("embedding").output_dim == 64
    assert not any(isinstance(la, ScheduledDropout) for la in model.layers)


def test_a_short_fit_lowers_the_loss(corpus):
    splits = load(corpus, sequence_length=16, stride=4)
    keras.utils.set_random_seed(0)
    model = build_char_lm(splits.spec, embedding_dim=16, units=(32,))
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    before = model.evaluate(splits.x_train, splits.y_train, verbose=0)
    model.fit(splits.x_train, splits.y_train, epochs=4, batch_size=32, verbose=0)
    after = model.evaluate(splits.x_train, splits.y_train, verbose=0)
    assert before == pytest.approx(np.log(splits.spec.num_classes), rel=0.05)  # uniform guess
    assert after < before - 0.7


# -------------------------------------------------------------------------------- sampling


def peaked(model):
    """The model with a scaled-up output layer: clear winners, so greedy decoding has no ties."""
    out = model.get_layer("output")
    kernel, bias = out.get_weights()
    out.set_weights([kernel * 30, bias])
    return model


def greedy(model, prompt, length, context=None):
    """The likeliest next character, appended one at a time: the model run on the whole text."""
    # one graph for every length: eager recurrent layers would be slow
    run = tf.function(
        lambda w: model(w, training=False), input_signature=[tf.TensorSpec([1, None], tf.int32)]
    )
    index = {c: i for i, c in enumerate(SPEC.vocabulary)}
    ids = [index[c] for c in prompt]
    for _ in range(length):
        window = np.asarray([ids[-context:] if context else ids], "int32")
        ids.append(int(np.argmax(run(window).numpy()[0, -1])))
    return "".join(SPEC.vocabulary[i] for i in ids)


@pytest.fixture(scope="module")
def lm():
    keras.utils.set_random_seed(1)
    return peaked(build_char_lm(SPEC, embedding_dim=8, cell="lstm", units=(16, 8)))


def test_sampling_is_deterministic_in_the_seed_and_the_length_right(lm):
    run = dict(prompt="X:1\nT:", length=40, temperature=1.0)
    a, b = generate_text(lm, SPEC, **run, seed=5), generate_text(lm, SPEC, **run, seed=5)
    c = generate_text(lm, SPEC, **run, seed=6)
    assert a == b and a != c
    assert len(a) == len("X:1\nT:") + 40 and a.startswith("X:1\nT:")
    assert set(a) <= set(SPEC.vocabulary)
    empty = generate_text(lm, SPEC, prompt="", length=25, temperature=1.0, seed=0)
    assert len(empty) == 25 and empty.startswith("X")  # ABC tunes open with "X:"
    assert generate_text(lm, SPEC, prompt="K:", length=0, temperature=1.0, seed=0) == "K:"


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_temperature_near_zero_decodes_greedily(cell):
    keras.utils.set_random_seed(2)
    model = peaked(build_char_lm(SPEC, embedding_dim=8, cell=cell, units=(16, 8), dropout=0.3))
    # stepping the recurrent cells with their state equals running the model on the whole text
    sampled = generate_text(model, SPEC, prompt="X:3\n", length=30, temperature=1e-6, seed=0)
    assert sampled == greedy(model, "X:3\n", 30)


def test_a_non_recurrent_model_sees_the_last_window_of_characters():
    """The Transformer decoder's contract too: ids (batch, T) -> probabilities (batch, T, V)."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = keras.layers.Embedding(V, 8)(inputs)
    x = keras.layers.Conv1D(16, 3, padding="causal", activation="relu")(x)
    outputs = keras.layers.Dense(V, activation="softmax", name="output")(x)
    model = peaked(keras.Model(inputs, outputs))
    sampled = generate_text(model, SPEC, prompt="X:", length=40, temperature=1e-6, seed=0)
    assert len(sampled) == 42 and sampled == greedy(model, "X:", 40, context=SPEC.input_shape[0])


def test_a_vocabulary_without_x_starts_from_a_seeded_character(lm):
    spec = DataSpec(
        input_shape=(16,),
        task="language_model",
        num_classes=V,
        vocabulary=tuple(c if c != "X" else "Y" for c in SPEC.vocabulary),
        input_dtype="int32",
    )
    a = generate_text(lm, spec, prompt="", length=10, temperature=1.0, seed=11)
    assert a == generate_text(lm, spec, prompt="", length=10, temperature=1.0, seed=11)
    assert len(a) == 10 and set(a) <= set(spec.vocabulary)


def test_bad_sampling_arguments_are_config_errors(lm):
    with pytest.raises(ConfigError) as err:
        generate_text(lm, SPEC, prompt="X:1\nT:Ré\u00e9", length=5, temperature=1.0, seed=0)
    line = one_line_error(err, "prompt")
    assert "characters not in the model's vocabulary: é" in line and "allowed: '\\n'" in line
    with pytest.raises(ConfigError) as err:
        generate_text(lm, SPEC, prompt="X", length=5, temperature=0.0, seed=0)
    one_line_error(err, "temperature")


# -------------------------------------------------------------------------- one whole run


def test_a_char_lm_run_logs_its_vocabulary_and_reloads_to_generate(store, corpus):
    cfg = validate(
        {
            "data": {"source": "abc_tunes", "path": str(corpus), "sequence_length": 16},
            "model": {"arch": "char_lm", "embedding_dim": 8, "units": [16]},
            "train": {"epochs": 2, "batch_size": 16, "verbose": 0},
            "tracking": {"experiment": "test"},
        }
    )
    result = train(cfg)
    run = mlflow.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.loss"] == "sparse_categorical_crossentropy"
    assert int(run.data.params["data_info.tunes_train"]) == 8
    assert 0.0 < run.data.metrics["test_accuracy"] <= 1.0
    logged = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/data_spec.json")
    spec = DataSpec.from_dict(logged)
    assert spec.vocabulary == tuple(sorted(set(CORPUS))) and spec.task == "language_model"
    assert spec.input_shape == (16,)
    model = mlflow.tensorflow.load_model(f"runs:/{result.run_id}/model")
    run_args = dict(prompt="X:", length=20, temperature=0.5, seed=0)
    assert generate_text(model, spec, **run_args) == generate_text(result.model, spec, **run_args)


@pytest.mark.slow
def test_tfdl_generate_writes_text_from_a_logged_run(store, corpus):
    """The whole path: train a tiny char_lm, then `tfdl generate` in a fresh process."""
    import os

    from tfdl import train
    from tfdl.config import validate

    from .conftest import run_tfdl

    cfg = validate(
        {
            "data": {"source": "abc_tunes", "path": str(corpus), "sequence_length": 30},
            "model": {"arch": "char_lm", "embedding_dim": 8, "units": [16]},
            "train": {"epochs": 1, "batch_size": 32, "verbose": 0},
            "tracking": {"experiment": "generate"},
        }
    )
    run_id = train(cfg).run_id
    env = {"MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"]}
    args = ("generate", "--run-id", run_id, "--prompt", "X:1", "--length", "50", "--seed", "4")
    first, second = run_tfdl(*args, env=env), run_tfdl(*args, env=env)
    assert first.returncode == 0, first.stderr
    text = first.stdout.rstrip("\n")
    assert text.startswith("X:1") and len(text) == 53 and set(text) <= set(CORPUS)
    assert second.stdout == first.stdout  # seeded
    bad = run_tfdl("generate", "--run-id", run_id, "--prompt", "€", env=env)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: --prompt:")
