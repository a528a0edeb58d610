"""Lecture 3 builders: CNNs, ResNets and augmentation follow their hyperparameters."""

import keras
import numpy as np
import pytest

from tfdl.errors import ConfigError
from tfdl.layers import ScheduledDropout
from tfdl.models import build_model
from tfdl.models.augment import augmentation
from tfdl.models.cnn import build_cnn1d, build_cnn2d
from tfdl.models.resnet import build_resnet
from tfdl.models.schema import ARCHITECTURES, Augmentation

from .conftest import data_spec, random_inputs

IMAGES = (8, 8, 1)
SEQUENCE = (40, 2)
FLAT = (40,)
AUGMENT = {"flip": "horizontal", "rotation": 0.1, "zoom": 0.1, "translation": 0.1}


def layers_of(model, kind):
    return [la for la in model.layers if isinstance(la, kind)]


def convs(model):
    return layers_of(model, keras.layers.Conv2D) + layers_of(model, keras.layers.Conv1D)


# ------------------------------------------------------------------------------- shapes


BUILDS = {
    "cnn2d": lambda s: build_cnn2d(data_spec(IMAGES, s)),
    "cnn1d_channels": lambda s: build_cnn1d(data_spec(SEQUENCE, s)),
    "cnn1d_flat": lambda s: build_cnn1d(data_spec(FLAT, s)),
    "resnet2d": lambda s: build_resnet(data_spec(IMAGES, s), stages=[8], stem_filters=8),
    "resnet1d": lambda s: build_resnet(data_spec(FLAT, s), stages=[8], stem_filters=8),
}


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize(
    ("task", "units", "activation"),
    [("multiclass", 10, "softmax"), ("binary", 1, "sigmoid"), ("regression", 1, "linear")],
)
def test_output_follows_the_task(build, task, units, activation):
    model = BUILDS[build](task)
    assert model.output_shape == (None, units)
    assert model.get_layer("output").activation.__name__ == activation
    shape = model.input_shape[1:]
    assert model(random_inputs(shape), training=False).shape == (4, units)


def test_build_model_uses_the_schema():
    for arch, shape in (("cnn2d", IMAGES), ("cnn1d", FLAT), ("resnet", SEQUENCE)):
        model = build_model(ARCHITECTURES[arch](arch=arch), data_spec(shape))
        assert model.name == arch and model.output_shape == (None, 10)


# ------------------------------------------------------------------------------- CNNs


def test_cnn2d_blocks_filters_kernels_strides_take_effect():
    model = build_cnn2d(
        data_spec((16, 16, 3)),
        filters=[4, 8, 16],
        kernel_size=[5, 3, 1],
        strides=[1, 2, 1],
        pool="average",
        dense_units=[12, 6],
        dropout=0.3,
    )
    conv = convs(model)
    assert [c.filters for c in conv] == [4, 8, 16]
    assert [c.kernel_size for c in conv] == [(5, 5), (3, 3), (1, 1)]
    assert [c.strides for c in conv] == [(1, 1), (2, 2), (1, 1)]
    assert all(c.padding == "same" for c in conv)
    assert conv[0].kernel.shape == (5, 5, 3, 4)  # the filter spans every input channel
    assert all(not c.use_bias for c in conv)  # batch norm's beta replaces the bias
    assert len(layers_of(model, keras.layers.BatchNormalization)) == 3
    assert len(layers_of(model, keras.layers.AveragePooling2D)) == 3
    assert not layers_of(model, keras.layers.MaxPooling2D)
    # 16 -pool-> 8 -stride-> 4 -pool-> 2 -pool-> 1: 1 x 1 x 16 features reach the head
    assert model.get_layer("flatten").output.shape == (None, 16)
    dense = layers_of(model, keras.layers.Dense)
    assert [d.units for d in dense] == [12, 6, 10]
    assert [d.initial_rate for d in layers_of(model, ScheduledDropout)] == [0.3, 0.3, 0.3]


def test_cnn2d_without_pooling_batch_norm_or_dropout():
    model = build_cnn2d(
        data_spec(IMAGES),
        filters=[4, 4],
        pool="none",
        batch_norm=False,
        dropout=0.0,
        activation="tanh",
    )
    assert not layers_of(model, keras.layers.MaxPooling2D)
    assert not layers_of(model, keras.layers.BatchNormalization)
    assert not layers_of(model, ScheduledDropout)
    assert all(c.use_bias for c in convs(model))
    assert model.get_layer("flatten").output.shape == (None, 8 * 8 * 4)  # "same" padding
    assert model.get_layer("block1_tanh").activation.__name__ == "tanh"


def test_pooling_never_shrinks_a_small_image_below_one_pixel():
    """8x8 digits: three 2x2 pools reach 1x1, a fourth and fifth block must still build."""
    model = build_cnn2d(data_spec(IMAGES), filters=[4, 4, 4, 4, 4])
    assert [p.output.shape[1:3] for p in layers_of(model, keras.layers.MaxPooling2D)] == [
        (4, 4),
        (2, 2),
        (1, 1),
    ]
    assert model.get_layer("flatten").output.shape == (None, 4)
    odd = build_cnn2d(data_spec((5, 3, 1)), filters=[4, 4, 4], pool_size=3)
    assert odd.get_layer("flatten").output.shape == (None, 4)  # 5x3 -> 2x1 -> 1x1
    assert odd(random_inputs((5, 3, 1))).shape == (4, 10)


def test_cnn2d_rejects_flat_input_with_a_hint():
    with pytest.raises(ValueError, match="as_images: true"):
        build_cnn2d(data_spec((64,)))
    with pytest.raises(ValueError, match="height, width, channels"):
        build_cnn2d(data_spec(SEQUENCE))


def test_flat_input_is_a_config_error_in_a_run():
    from tfdl.compile import resolve
    from tfdl.config import validate
    from tfdl.data.spec import Splits
    from tfdl.prepared import Prepared
    from tfdl.training import build

    cfg = validate({"data": {"source": "digits"}, "model": {"arch": "cnn2d"}})
    flat = data_spec((64,))
    splits = Splits(None, np.zeros(64), None, None, None, None, flat)  # building needs no data
    with pytest.raises(ConfigError, match="as_images"):
        build(Prepared(resolve(cfg, flat), splits))


def test_cnn1d_reads_a_flat_vector_as_a_sequence():
    model = build_cnn1d(data_spec(FLAT), filters=[4, 8], strides=[2, 1])
    assert model.get_layer("as_sequence").output.shape == (None, 40, 1)
    conv = convs(model)
    assert all(isinstance(c, keras.layers.Conv1D) for c in conv)
    assert [c.kernel_size for c in conv] == [(5,), (5,)]  # the 1-D default
    assert [c.strides for c in conv] == [(2,), (1,)]
    assert conv[0].kernel.shape == (5, 1, 4)
    # 40 -stride-> 20 -pool-> 10 -pool-> 5 steps of 8 channels
    assert model.get_layer("flatten").output.shape == (None, 5 * 8)


def test_cnn1d_keeps_channels_and_rejects_images():
    model = build_cnn1d(data_spec(SEQUENCE), kernel_size=[7, 3])
    assert convs(model)[0].kernel.shape == (7, 2, 32)
    assert convs(model)[1].kernel_size == (3,)
    with pytest.raises(ValueError, match="sequences"):
        build_cnn1d(data_spec(IMAGES))
    with pytest.raises(ValueError, match="kernel_size lists 3 values for 2"):
        build_cnn1d(data_spec(FLAT), kernel_size=[3, 3, 3])


# ------------------------------------------------------------------------------- ResNet


def names(model, suffix):
    return sorted(la.name.removesuffix(suffix) for la in model.layers if la.name.endswith(suffix))


def test_resnet_add_layers_and_projections_where_shapes_change():
    model = build_resnet(data_spec(IMAGES), stem_filters=8, stages=[8, 16, 16], blocks_per_stage=2)
    assert len(layers_of(model, keras.layers.Add)) == 3 * 2
    # width 8 -> 16 and stride 2 at stage 2; stride 2 alone at stage 3; identity elsewhere
    assert names(model, "_projection") == ["stage2_block1", "stage3_block1"]
    for name in ("stage2_block1", "stage3_block1"):
        proj = model.get_layer(f"{name}_projection")
        assert proj.kernel_size == (1, 1) and proj.strides == (2, 2)
        assert model.get_layer(f"{name}_conv1").strides == (2, 2)
    assert model.get_layer("stage1_block1_add").output.shape == (None, 8, 8, 8)
    assert model.get_layer("stage2_block2_add").output.shape == (None, 4, 4, 16)
    assert model.get_layer("stage3_block2_add").output.shape == (None, 2, 2, 16)
    assert layers_of(model, keras.layers.GlobalAveragePooling2D)

    wider = build_resnet(data_spec(IMAGES), stem_filters=4, stages=[8], blocks_per_stage=3)
    assert names(wider, "_projection") == ["stage1_block1"]  # the stem is narrower
    assert wider.get_layer("stage1_block1_projection").strides == (1, 1)
    assert len(layers_of(wider, keras.layers.Add)) == 3


def test_resnet_identity_skip_adds_the_block_input():
    """y = ReLU(F(x) + x): the add layer's second input is the previous block's output."""
    model = build_resnet(data_spec(IMAGES), stem_filters=8, stages=[8], blocks_per_stage=1)
    add = model.get_layer("stage1_block1_add")
    sources = [t._keras_history.operation.name for t in add.input]
    assert sources == ["stage1_block1_bn2", "stem_relu"]


def test_resnet_strides_clamp_on_tiny_inputs():
    model = build_resnet(data_spec((2, 2, 1)), stem_filters=8, stages=[8, 8, 8], blocks_per_stage=1)
    # stage 2 halves 2x2 to 1x1 (a projection); stage 3 has nothing left to halve (identity)
    assert names(model, "_projection") == ["stage2_block1"]
    assert model.get_layer("stage3_block1_conv1").strides == (1, 1)
    assert model.get_layer("stage3_block1_add").output.shape == (None, 1, 1, 8)
    strip = build_resnet(data_spec((1, 8, 1)), stages=[8, 8])
    assert strip.get_layer("stage2_block1_conv1").strides == (1, 2)
    assert model(random_inputs((2, 2, 1))).shape == (4, 10)


def test_plain_net_is_the_same_net_without_skips():
    kwargs = {"stem_filters": 8, "stages": [8, 16], "blocks_per_stage": 2}
    resnet = build_resnet(data_spec(IMAGES), **kwargs)
    plain = build_resnet(data_spec(IMAGES), residual=False, **kwargs)
    assert plain.name == "plain_net" and not layers_of(plain, keras.layers.Add)
    assert not names(plain, "_projection")
    main_path = [c.name for c in convs(resnet) if not c.name.endswith("_projection")]
    assert [c.name for c in convs(plain)] == main_path
    assert [la.output.shape for la in convs(plain)] == [
        resnet.get_layer(n).output.shape for n in main_path
    ]


def test_resnet_dimension_follows_the_input_rank():
    image = build_resnet(data_spec(IMAGES), stages=[8])
    assert convs(image) and all(isinstance(c, keras.layers.Conv2D) for c in convs(image))
    for shape in (FLAT, SEQUENCE):
        seq = build_resnet(data_spec(shape), stages=[8, 8], dropout=0.5)
        assert all(isinstance(c, keras.layers.Conv1D) for c in convs(seq))
        assert seq.get_layer("stage2_block1_conv1").strides == (2,)
        assert seq.get_layer("stage2_block2_add").output.shape == (None, 20, 8)
        assert seq.get_layer("dropout").rate == 0.5
    assert build_resnet(data_spec(FLAT)).get_layer("as_sequence").output.shape == (None, 40, 1)
    with pytest.raises(ValueError, match="augment"):
        build_resnet(data_spec(FLAT), augment={"rotation": 0.1})


# ------------------------------------------------------------------------------- augmentation


def test_augmentation_layers_follow_the_config():
    assert augmentation(None) is None
    assert augmentation({"flip": "none", "rotation": 0.0, "zoom": 0.0, "translation": 0.0}) is None
    layers = augmentation(AUGMENT)
    assert [type(la).__name__ for la in layers.layers] == [
        "RandomFlip",
        "RandomRotation",
        "RandomZoom",
        "RandomTranslation",
    ]
    assert layers.layers[0].mode == "horizontal"
    assert layers.layers[1].factor == (-0.1, 0.1)  # up to 0.1 turn either way
    assert augmentation(Augmentation()) is None  # the schema's defaults do nothing
    assert len(augmentation(Augmentation(flip="vertical", zoom=0.2)).layers) == 2


def test_augmentation_acts_in_training_only():
    """Same weights, with and without augmentation: equal in inference, different in training."""
    keras.utils.set_random_seed(0)
    plain = build_cnn2d(data_spec(IMAGES), filters=[4], dense_units=[], dropout=0.0)
    augmented = build_cnn2d(
        data_spec(IMAGES), filters=[4], dense_units=[], dropout=0.0, augment={"rotation": 0.2}
    )
    augmented.set_weights(plain.get_weights())
    x = random_inputs(IMAGES, n=8)
    np.testing.assert_allclose(augmented(x, training=False), plain(x, training=False), atol=1e-6)
    assert not np.allclose(augmented(x, training=True), plain(x, training=True), atol=1e-3)

    layers = augmentation(AUGMENT)
    np.testing.assert_array_equal(layers(x, training=False), x)
    assert not np.allclose(layers(x, training=True), x)


@pytest.mark.parametrize("builder", [build_cnn2d, build_resnet])
def test_save_and_load_keras_with_augmentation(builder, tmp_path):
    kwargs = {"stages": [4], "stem_filters": 4} if builder is build_resnet else {"filters": [4]}
    model = builder(data_spec(IMAGES), augment=AUGMENT, **kwargs)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x = random_inputs(IMAGES)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert [type(la).__name__ for la in loaded.get_layer("augmentation").layers] == [
        type(la).__name__ for la in model.get_layer("augmentation").layers
    ]
    assert loaded.get_layer("augmentation").layers[2].height_factor == 0.1


# ------------------------------------------------------------------------------- learning


def bump_data(shape, n=256, seed=0):
    """Noise with one bump at a random place: upwards (label 1) or downwards (label 0).

    Where the bump is does not matter, so a net with global pooling can learn it too.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=0.3, size=(n, *shape)).astype("float32")
    y = rng.integers(0, 2, size=n)
    for i, label in enumerate(y):
        x[i, rng.integers(0, shape[0])] += 2.0 if label else -2.0
    return x, y.astype("float32").reshape(-1, 1)


@pytest.mark.parametrize(
    ("builder", "shape", "kwargs"),
    [
        (build_cnn2d, IMAGES, {"filters": [8], "dense_units": [8], "dropout": 0.0}),
        (build_cnn1d, FLAT, {"filters": [8], "dense_units": [8], "dropout": 0.0}),
        (build_resnet, FLAT, {"stem_filters": 8, "stages": [8], "blocks_per_stage": 1}),
    ],
)
def test_a_short_fit_reduces_the_loss(builder, shape, kwargs):
    keras.utils.set_random_seed(1)
    x, y = bump_data(shape)
    model = builder(data_spec(shape, "binary"), **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy")

    def loss():  # on the whole set, batch norm on batch statistics as in training
        return float(keras.ops.mean(keras.losses.binary_crossentropy(y, model(x, training=True))))

    before = loss()
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    assert loss() < 0.5 * before
