"""The pictures of a run: which are drawn when, their size, and the data behind them."""

import struct

import numpy as np
import pandas as pd
import pytest

from tfdl.config import validate
from tfdl.data.spec import take
from tfdl.pictures import PictureWarning, attention_scores, predicted_classes, run_pictures
from tfdl.prepared import prepare
from tfdl.training import build

# A picture that fails only warns at run time; here it must fail the test.
pytestmark = pytest.mark.filterwarnings("error::tfdl.pictures.PictureWarning")

WIDTH, HEIGHT = 640, 480
HISTORY = pd.DataFrame(
    {
        "epoch": [1, 2, 3],
        "loss": [1.0, 0.6, 0.4],
        "accuracy": [0.5, 0.7, 0.8],
        "val_loss": [1.1, 0.8, 0.7],
        "val_accuracy": [0.45, 0.6, 0.7],
        "learning_rate": [1e-3, 1e-3, 5e-4],
    }
)


def png_size(path) -> tuple[int, int]:
    """Width and height from the PNG signature and IHDR chunk."""
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


def setup(data, model, epochs=0):
    """A built model for a tiny pipeline, trained `epochs` epochs on the training split."""
    cfg = validate(
        {
            "data": data,
            "model": model,
            "train": {"epochs": 1, "batch_size": 32, "verbose": 0},
            "tracking": {"experiment": "test"},
        }
    )
    p = prepare(cfg)
    cfg, splits = p.cfg, p.splits
    model = build(p)
    if epochs:
        model.fit(splits.x_train, splits.y_train, epochs=epochs, batch_size=32, verbose=0)
    return model, cfg, splits


def draw(model, cfg, splits, tmp_path, history=HISTORY):
    written = run_pictures(model, cfg, splits, history, tmp_path / "pictures")
    names = {p.name for p in written}
    assert all(p.parent == tmp_path / "pictures" and p.exists() for p in written)
    assert names == {p.name for p in (tmp_path / "pictures").iterdir()}  # nothing unlisted
    for p in written:
        if p.suffix == ".png":
            assert png_size(p) == (WIDTH, HEIGHT), p.name
    return names, tmp_path / "pictures"


def test_regression_gets_curves_schedules_and_gradient_norms_only(tmp_path):
    model, cfg, splits = setup({"source": "diabetes"}, {"arch": "deep_mlp", "units": [8]})
    history = HISTORY.rename(columns={"accuracy": "mae", "val_accuracy": "val_mae"}).assign(
        dropout_rate=[0.5, 0.4, 0.3],
        gap_loss=[0.1, 0.2, 0.3],
        **{"grad_norm/dense_0": [1.0, 0.5, 0.1], "grad_norm/output": [2.0, 1.0, 0.0]},
    )
    names, _ = draw(model, cfg, splits, tmp_path, history)
    assert names == {"learning_curves.png", "schedules.png", "gradient_norms.png"}


def test_no_schedule_or_gradient_picture_when_not_logged_and_none_for_an_empty_history(
    tmp_path,
):
    model, cfg, splits = setup({"source": "diabetes"}, {"arch": "deep_mlp", "units": [8]})
    names, _ = draw(model, cfg, splits, tmp_path, HISTORY[["epoch", "loss", "val_loss"]])
    assert names == {"learning_curves.png"}
    empty = run_pictures(model, cfg, splits, HISTORY.iloc[:0], tmp_path / "empty")
    assert empty == []


def test_binary_2d_confusion_matrix_counts_and_decision_boundary(tmp_path):
    model, cfg, splits = setup(
        {"source": "moons", "n_samples": 200}, {"arch": "deep_mlp", "units": [8]}, epochs=2
    )
    names, folder = draw(model, cfg, splits, tmp_path)
    assert {"confusion_matrix.png", "confusion_matrix.csv", "decision_boundary.png"} <= names
    counts = pd.read_csv(folder / "confusion_matrix.csv", index_col=0)
    assert list(counts.columns) == ["red", "green"] and list(counts.index) == ["red", "green"]
    assert counts.to_numpy().sum() == len(splits.y_test)
    # by hand: p(green) > 0.5 is a green prediction
    predicted = (model.predict(splits.x_test, verbose=0)[:, 0] > 0.5).astype(int)
    manual = np.zeros((2, 2), int)
    np.add.at(manual, (splits.y_test.astype(int).ravel(), predicted), 1)
    np.testing.assert_array_equal(counts.to_numpy(), manual)


def test_multiclass_confusion_matrix_and_no_decision_boundary_beyond_2d(tmp_path):
    model, cfg, splits = setup({"source": "iris"}, {"arch": "deep_mlp", "units": [8]}, epochs=1)
    names, folder = draw(model, cfg, splits, tmp_path)
    assert "decision_boundary.png" not in names and "first_layer_filters.png" not in names
    counts = pd.read_csv(folder / "confusion_matrix.csv", index_col=0).to_numpy()
    assert counts.shape == (3, 3) and counts.sum() == len(splits.y_test)
    predicted = predicted_classes(model, splits.x_test, "multiclass")
    np.testing.assert_array_equal(predicted, model.predict(splits.x_test, verbose=0).argmax(axis=1))
    np.testing.assert_array_equal(counts.sum(axis=0), np.bincount(predicted, minlength=3))
    np.testing.assert_array_equal(counts.sum(axis=1), np.bincount(splits.y_test, minlength=3))


@pytest.mark.parametrize("filters, panels", [(6, 6), (40, 32)])
def test_first_layer_filters_one_panel_per_filter(tmp_path, filters, panels):
    model, cfg, splits = setup(
        {"source": "digits", "as_images": True},
        {"arch": "cnn2d", "filters": [filters, 4], "dense_units": [8]},
    )
    names, folder = draw(model, cfg, splits, tmp_path)
    assert {"first_layer_filters.png", "confusion_matrix.png"} <= names
    weights = pd.read_csv(folder / "first_layer_filters.csv", index_col=0)
    assert len(weights) == panels and weights.shape[1] == 3 * 3  # 3x3 kernels, one channel
    kernel = np.asarray(model.get_layer("block1_conv").kernel)  # (3, 3, 1, filters)
    np.testing.assert_allclose(weights.iloc[1].to_numpy(), kernel[..., 0, 1].ravel(), rtol=1e-5)


@pytest.mark.parametrize("impl", ["keras", "scratch"])
def test_encoder_attention_pictures_rows_sum_to_one(tmp_path, impl):
    model, cfg, splits = setup(
        {"source": "digits"},
        {"arch": "transformer_encoder", "patch_size": 8, "d_model": 8, "num_heads": 2}
        | {"ff_dim": 8, "num_layers": 2, "impl": impl},
    )
    names, folder = draw(model, cfg, splits, tmp_path)
    layers = ["encoder_0_self_attention", "encoder_1_self_attention"]
    assert {f"attention_{n}.png" for n in layers} <= names
    scores = np.load(folder / "attention_scores.npz")
    assert sorted(scores.files) == layers
    for name in layers:
        assert scores[name].shape == (2, 2, 8, 8)  # 2 test inputs, 2 heads, 64 / 8 tokens
        np.testing.assert_allclose(scores[name].sum(axis=-1), 1.0, atol=1e-5)


def test_seq2seq_attention_follows_the_causal_and_padding_masks(tmp_path):
    model, cfg, splits = setup(
        {"source": "dates", "n_samples": 100},
        {"arch": "transformer_seq2seq", "d_model": 8, "num_heads": 2, "ff_dim": 8}
        | {"num_encoder_layers": 1, "num_decoder_layers": 1},
    )
    names, _ = draw(model, cfg, splits, tmp_path)
    assert "confusion_matrix.png" not in names and "sample.txt" not in names
    x = take(splits.x_test, slice(0, 2))
    scores = attention_scores(model, x)
    assert set(scores) == {
        "encoder_0_self_attention",
        "decoder_0_self_attention",
        "decoder_0_cross_attention",
    }
    for weights in scores.values():
        np.testing.assert_allclose(weights.sum(axis=-1), 1.0, atol=1e-5)
    causal = scores["decoder_0_self_attention"]
    assert np.all(np.triu(np.ones(causal.shape[-2:]), k=1) * causal == 0)  # no peeking ahead
    padded = x["encoder_inputs"] == 0  # pad keys get no attention, from either side
    assert padded.any()
    for name in ("encoder_0_self_attention", "decoder_0_cross_attention"):
        weights = scores[name]  # (batch, heads, T_q, T_k)
        assert np.all(weights[np.broadcast_to(padded[:, None, None, :], weights.shape)] == 0)


def test_language_model_sample_and_decoder_attention(tmp_path):
    rng = np.random.default_rng(0)
    corpus = tmp_path / "tunes.abc"
    corpus.write_text(
        "\n\n".join(
            f"X:{i}\nT:Reel\nK:D\n"
            + "|".join("".join(rng.choice(list("ABCDEFG"), 8)) for _ in range(6))
            for i in range(8)
        )
    )
    model, cfg, splits = setup(
        {"source": "abc_tunes", "path": str(corpus), "sequence_length": 16},
        {"arch": "transformer_decoder", "d_model": 8, "num_heads": 2, "ff_dim": 8}
        | {"num_layers": 1},
    )
    names, folder = draw(model, cfg, splits, tmp_path)
    assert {"sample.txt", "attention_decoder_0_self_attention.png"} <= names
    assert "confusion_matrix.png" not in names
    sample = (folder / "sample.txt").read_text(encoding="utf-8")
    assert len(sample) == 200 and set(sample) <= set(splits.spec.vocabulary)
    weights = np.load(folder / "attention_scores.npz")["decoder_0_self_attention"]
    assert weights.shape == (2, 2, 16, 16)
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, atol=1e-5)


def test_a_failing_picture_warns_and_the_others_are_still_written(tmp_path):
    model, cfg, splits = setup({"source": "iris"}, {"arch": "deep_mlp", "units": [8]})
    broken = splits.__class__(**{**vars(splits), "x_test": np.zeros((3, 7), "float32")})
    with pytest.warns(PictureWarning, match="confusion matrix"):
        names, _ = draw(model, cfg, broken, tmp_path)
    assert names == {"learning_curves.png", "schedules.png"}
