"""Transformers (encoder classifier, decoder-only LM, encoder-decoder) and the dates data set."""

import json
from datetime import date, datetime

import keras
import numpy as np
import pytest

from tfdl.data import dates
from tfdl.data.schema import Dates
from tfdl.data.spec import DataSpec, Splits
from tfdl.data.split import load_splits
from tfdl.errors import ConfigError
from tfdl.models import transformer as tr

from .conftest import LM_SPEC

TINY = dict(d_model=16, num_heads=2, ff_dim=32, dropout=0.0)
SEQUENCE = DataSpec(input_shape=(40, 1), task="multiclass", num_classes=10)


def rng():
    return np.random.default_rng(0)


def build(builder, spec, seed=0, **hp):
    keras.utils.set_random_seed(seed)
    return builder(spec, **{**TINY, **hp})


def seq2seq(spec, **hp):
    return build(
        tr.build_transformer_seq2seq, spec, num_encoder_layers=1, num_decoder_layers=1, **hp
    )


def attention_names(model):
    return [layer.name for layer in model.layers if "attention" in type(layer).__name__.lower()]


# --- encoder classifier ---------------------------------------------------------------------


def test_encoder_patches_the_sequence_and_stacks_blocks():
    model = build(tr.build_transformer_encoder, SEQUENCE, patch_size=4, num_layers=3)
    assert model.get_layer("patches").output.shape == (None, 10, 4)  # 40 steps / 4 per token
    assert model.get_layer("patch_embedding").output.shape == (None, 10, 16)
    assert attention_names(model) == [f"encoder_{i}_self_attention" for i in range(3)]
    assert model.get_layer("encoder_0_ffn_hidden").units == 32
    probs = model(rng().normal(size=(3, 40, 1)).astype("float32"))
    assert probs.shape == (3, 10)
    np.testing.assert_allclose(probs.numpy().sum(axis=1), 1.0, rtol=1e-5)


def test_encoder_takes_flat_features_and_other_tasks():
    digits = DataSpec(input_shape=(64,), task="binary", num_classes=2)
    model = build(tr.build_transformer_encoder, digits, patch_size=8)
    assert model.get_layer("patches").output.shape == (None, 8, 8)
    assert model.output_shape == (None, 1) and model.layers[-1].activation.__name__ == "sigmoid"
    images = DataSpec(input_shape=(8, 8, 1), task="regression")  # 8 rows of 8 pixels
    model = build(tr.build_transformer_encoder, images, patch_size=2)
    assert model.get_layer("patches").output.shape == (None, 4, 16)


def test_encoder_rejects_a_patch_size_that_does_not_divide_the_steps():
    with pytest.raises(ValueError, match="patch_size=3"):
        build(tr.build_transformer_encoder, SEQUENCE, patch_size=3)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_pooling_reads_the_mean_or_the_cls_position(pooling):
    model = build(tr.build_transformer_encoder, SEQUENCE, patch_size=5, pooling=pooling)
    x = rng().normal(size=(4, 40, 1)).astype("float32")
    last = keras.Model(model.input, model.get_layer("encoder_1_ffn_norm").output)(x).numpy()
    tokens = 8 + (pooling == "cls")  # the [CLS] token is one more position
    assert last.shape == (4, tokens, 16)
    summary = last[:, 0] if pooling == "cls" else last.mean(axis=1)
    np.testing.assert_allclose(
        model(x).numpy(), model.get_layer("output")(summary).numpy(), atol=1e-5
    )
    if pooling == "cls":  # the learned token takes part: changing it changes the output
        cls = model.get_layer("cls_token")
        before = model(x).numpy()
        cls.token.assign(cls.token.numpy() + 1.0)
        assert not np.allclose(before, model(x).numpy(), atol=1e-4)


# --- decoder-only language model ------------------------------------------------------------


@pytest.mark.parametrize("impl", ["keras", "scratch"])
def test_decoder_lm_shapes_and_causality(impl):
    model = build(tr.build_transformer_decoder, LM_SPEC, impl=impl, num_layers=2)
    assert attention_names(model) == ["decoder_0_self_attention", "decoder_1_self_attention"]
    x = rng().integers(0, 7, size=(2, 12)).astype("int32")
    probs = model(x).numpy()
    assert probs.shape == (2, 12, 7)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)
    assert model(x[:, :5]).shape == (2, 5, 7)  # any length
    changed = x.copy()
    changed[:, 6] = (changed[:, 6] + 1) % 7
    after = model(changed).numpy()
    np.testing.assert_allclose(after[:, :6], probs[:, :6], atol=1e-6)  # the past is blind to it
    assert not np.allclose(after[:, 6:], probs[:, 6:], atol=1e-4)  # the future sees it


# --- encoder-decoder ------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["keras", "scratch"])
def test_seq2seq_shapes_and_decoder_causality(date_data, impl):
    model = seq2seq(date_data.spec, impl=impl)
    assert attention_names(model) == [
        "encoder_0_self_attention",
        "decoder_0_self_attention",
        "decoder_0_cross_attention",
    ]
    x = {k: v[:4] for k, v in date_data.x.items()}
    probs = model(x).numpy()
    assert probs.shape == (4, 11, len(dates.VOCABULARY))
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)
    changed = {**x, "decoder_inputs": x["decoder_inputs"].copy()}
    changed["decoder_inputs"][:, 5] = (changed["decoder_inputs"][:, 5] + 1) % 10 + 8
    after = model(changed).numpy()
    np.testing.assert_allclose(after[:, :5], probs[:, :5], atol=1e-6)
    assert not np.allclose(after[:, 5:], probs[:, 5:], atol=1e-4)
    # every decoder step reads the whole source through cross-attention
    other = {**x, "encoder_inputs": x["encoder_inputs"][::-1].copy()}
    assert np.abs(model(other).numpy() - probs).max(axis=(1, 2)).min() > 1e-4


@pytest.mark.parametrize("impl", ["keras", "scratch"])
def test_encoder_padding_is_masked(date_data, impl):
    model = seq2seq(date_data.spec, impl=impl)
    x = {k: v[:4] for k, v in date_data.x.items()}
    probs = model(x).numpy()
    # More padding: without the mask the extra keys would take softmax weight.
    longer = np.pad(x["encoder_inputs"], ((0, 0), (0, 9)))
    np.testing.assert_allclose(model({**x, "encoder_inputs": longer}).numpy(), probs, atol=1e-6)
    # Whatever vector sits at the pad positions, the outputs stay the same.
    table = model.get_layer("token_embedding").embeddings
    moved = table.numpy()
    moved[0] += rng().normal(size=16).astype("float32") * 5.0  # pad is id 0
    table.assign(moved)
    np.testing.assert_allclose(model(x).numpy(), probs, atol=1e-5)
    # ...and the mask is what does it: an unmasked copy of the source changes them.
    unmasked = {**x, "encoder_inputs": np.where(longer == 0, 3, longer)}  # pads -> spaces
    assert not np.allclose(model(unmasked).numpy(), probs, atol=1e-4)


# --- keras vs scratch attention -------------------------------------------------------------


CASES = {
    "encoder": (tr.build_transformer_encoder, SEQUENCE, dict(patch_size=4, pooling="cls")),
    "decoder": (tr.build_transformer_decoder, LM_SPEC, {}),
    "seq2seq": (tr.build_transformer_seq2seq, None, {}),
}


@pytest.mark.parametrize("case", CASES)
def test_keras_and_scratch_attention_give_equal_outputs(case, date_data):
    builder, spec, hp = CASES[case]
    spec = spec or date_data.spec
    k = build(builder, spec, impl="keras", **hp)
    s = build(builder, spec, seed=1, impl="scratch", **hp)
    k_paths = [w.path.replace("attention_output/", "output_").replace("/", "_") for w in k.weights]
    s_paths = [w.path.replace("/", "_") for w in s.weights]
    assert k_paths == s_paths  # same layers, same order: weights copy one to one
    s.set_weights(k.get_weights())
    x = {
        "encoder": rng().normal(size=(3, 40, 1)).astype("float32"),
        "decoder": rng().integers(0, 7, size=(3, 12)).astype("int32"),
        "seq2seq": {k_: v[:3] for k_, v in date_data.x.items()},
    }[case]
    np.testing.assert_allclose(s(x).numpy(), k(x).numpy(), atol=1e-5)


@pytest.mark.parametrize("case", ["encoder", "seq2seq"])
def test_models_save_and_load(case, date_data, tmp_path):
    builder, spec, hp = CASES[case]
    model = build(builder, spec or date_data.spec, impl="scratch", **hp)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x = (
        rng().normal(size=(2, 40, 1)).astype("float32")
        if case == "encoder"
        else {k: v[:2] for k, v in date_data.x.items()}
    )
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-6)


# --- the dates data set ---------------------------------------------------------------------

# strptime formats reading each of dates.FORMATS back (%y's own century rule is overridden).
PARSERS = (
    "%A, %d %B %Y",
    "%d %B %Y",
    "%B %d, %Y",
    "%d %b %Y",
    "%d/%m/%y",
    "%d.%m.%Y",
    "%Y %B %d",
    "%a %b %d %Y",
    "%d-%b-%Y",
)


def parse(text: str) -> date:
    for fmt in PARSERS:
        try:
            d = datetime.strptime(text, fmt).date()
        except ValueError:
            continue
        if fmt.endswith("%y"):  # DD/MM/YY: 50-99 -> 19xx, 00-49 -> 20xx
            d = d.replace(year=(1900 if d.year % 100 >= 50 else 2000) + d.year % 100)
        if "%A" in fmt or "%a" in fmt:
            assert text.split()[0].strip(",").lower()[:3] == d.strftime("%a").lower(), text
        return d
    raise AssertionError(f"no format reads {text!r}")


def test_dates_read_back_to_their_iso_targets():
    data = dates.load_dates(Dates(source="dates", n_samples=400), seed=0)
    vocab = data.spec.vocabulary
    sources = [dates.decode(row, vocab) for row in data.x["encoder_inputs"]]
    targets = [dates.decode(row, vocab) for row in data.y]
    for text, target in zip(sources, targets, strict=True):
        d = parse(text)
        assert target == d.isoformat() and dates.FIRST <= d <= dates.LAST
    assert {text.lower() != text for text in sources} == {True, False}  # cases vary
    assert dates.format_date(date(2021, 3, 3), 0) == "wednesday, 3 march 2021"
    assert dates.format_date(date(1968, 12, 31), 4) == "31/12/68"
    assert dates.format_date(date(2021, 3, 3), 5, case=2) == "3.3.2021"
    assert dates.format_date(date(2021, 3, 3), 7, case=1) == "Wed Mar 3 2021"


def test_dates_arrays_follow_the_teacher_forcing_layout(date_data):
    x, y, spec = date_data.x, date_data.y, date_data.spec
    start, end = dates.VOCABULARY.index(dates.START), dates.VOCABULARY.index(dates.END)
    assert dates.VOCABULARY[:3] == (dates.PAD, dates.START, dates.END)
    assert x["encoder_inputs"].shape == (64, spec.input_shape[0]) and spec.input_shape == (32,)
    assert x["decoder_inputs"].shape == y.shape == (64, 11) == (64, spec.target_length)
    assert x["encoder_inputs"].dtype == x["decoder_inputs"].dtype == np.int32
    assert (x["decoder_inputs"][:, 0] == start).all() and (y[:, -1] == end).all()
    np.testing.assert_array_equal(x["decoder_inputs"][:, 1:], y[:, :-1])  # shifted by one
    # sources are right-padded: after the first pad, only pads
    enc = x["encoder_inputs"]
    assert all((row[np.argmax(row == 0) :] == 0).all() for row in enc if (row == 0).any())
    assert spec.task == "seq2seq" and spec.num_classes == len(spec.vocabulary)
    assert spec.input_dtype == "int32"
    assert DataSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_dates_vocabulary_covers_every_character():
    chars = set()
    for o in range(dates.FIRST.toordinal(), dates.LAST.toordinal() + 1, 97):
        d = date.fromordinal(o)
        for fmt in range(len(dates.FORMATS)):
            for case in range(len(dates.CASES)):
                text = dates.format_date(d, fmt, case)
                assert len(text) <= dates.SOURCE_LENGTH
                chars |= set(text) | set(d.isoformat())
    assert chars <= set(dates.VOCABULARY)
    assert len(set(dates.VOCABULARY)) == len(dates.VOCABULARY)


def test_dates_are_deterministic_in_the_seed():
    def load(seed):
        return dates.load_dates(Dates(source="dates", n_samples=50), seed)

    a, b, c = load(1), load(1), load(2)
    assert all(np.array_equal(a.x[k], b.x[k]) for k in a.x) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.x["encoder_inputs"], c.x["encoder_inputs"])


def test_dates_split_keeps_dict_inputs_and_token_ids():
    splits = load_splits(Dates(source="dates", n_samples=200), seed=0)
    assert splits.info["normalize"] == "none"
    assert splits.info["n_test"] == 30 and splits.info["n_train"] + splits.info["n_val"] == 170
    for x, y in ((splits.x_train, splits.y_train), (splits.x_test, splits.y_test)):
        assert (
            set(x) == {"encoder_inputs", "decoder_inputs"} and x["encoder_inputs"].dtype.kind == "i"
        )
        np.testing.assert_array_equal(x["decoder_inputs"][:, 1:], y[:, :-1])  # rows stay paired


# --- training, greedy decoding, exact match -------------------------------------------------


@pytest.fixture(scope="module")
def trained():
    """A tiny translator trained briefly on a few hundred dates: (model, loss per epoch)."""
    data = dates.load_dates(Dates(source="dates", n_samples=768), seed=0)
    model = seq2seq(data.spec, ff_dim=64, d_model=32)
    model.compile(
        keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    history = model.fit(data.x, data.y, epochs=4, batch_size=32, verbose=0).history
    return model, history


def test_a_tiny_translator_learns(trained):
    _, history = trained
    assert history["loss"][-1] < 0.6 * history["loss"][0], history["loss"]
    assert history["accuracy"][-1] > 0.5  # per character, teacher forced


def greedy_one_by_one(model, spec, source):
    """The textbook loop: one sample, the decoder input growing by one token per step."""
    start, end = spec.vocabulary.index(dates.START), spec.vocabulary.index(dates.END)
    out = [start]
    for _ in range(spec.target_length):
        x = {"encoder_inputs": source[None], "decoder_inputs": np.array([out], dtype="int32")}
        out.append(int(np.argmax(model.predict_on_batch(x)[0, -1])))
        if out[-1] == end:
            break
    return out[1:]


def test_exact_match_equals_a_one_by_one_greedy_decode(trained, date_data):
    model, spec = trained[0], date_data.spec
    sources = date_data.x["encoder_inputs"][:6]
    manual = [greedy_one_by_one(model, spec, s) for s in sources]
    batched = tr.greedy_decode(model, spec, sources)
    for want, got in zip(manual, batched, strict=True):
        np.testing.assert_array_equal(got[: len(want)], want)
        assert (got[len(want) :] == 0).all()
    # targets: the true date for even rows, the model's own output for odd rows
    y = date_data.y[:6].copy()
    for i in range(1, 6, 2):
        y[i] = 0
        y[i, : len(manual[i])] = manual[i]
    truth = [dates.decode(t, spec.vocabulary) for t in date_data.y[:6]]
    said = [dates.decode(m, spec.vocabulary) for m in manual]
    expected = np.mean([i % 2 or said[i] == truth[i] for i in range(6)])
    x = {k: v[:6] for k, v in date_data.x.items()}
    splits = Splits(x, y, x, y, x, y, spec)
    assert tr.exact_match(model, splits) == {"exact_match": pytest.approx(expected)}
    assert tr.translate(
        model, spec, prompt=dates.decode(sources[0], spec.vocabulary), length=50, temperature=1.0,
        seed=0,
    ) == said[0]  # fmt: skip


def test_translate_checks_the_prompt_and_stops_at_length(trained, date_data):
    model, spec = trained[0], date_data.spec
    with pytest.raises(ConfigError, match=r"prompt: .*'\?'.*allowed: .*0123456789") as err:
        tr.translate(model, spec, prompt="3 march 2021?", length=11, temperature=1.0, seed=0)
    assert err.value.field == "prompt"
    with pytest.raises(ConfigError, match="prompt"):
        tr.translate(model, spec, prompt="3" * 33, length=11, temperature=1.0, seed=0)
    assert (
        len(tr.translate(model, spec, prompt="3 march 2021", length=3, temperature=0.5, seed=1))
        <= 3
    )
