"""Every registered architecture, each `impl` it offers: its defaults build a model whose
output fits each task it takes, `impl: scratch` swaps in the lecture's layers, a few
optimizer steps fit a small batch (by fit and by the lecture's loop), and a .keras file
predicts what the model did.

Parametrised over the registry itself, so a newly registered builder is checked too.
"""

import json
from typing import get_args

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfdl.compile import TASK_METRICS, make_metrics, resolve
from tfdl.config import validate
from tfdl.data.spec import take
from tfdl.gradient_descent import gradient_descent
from tfdl.models import build_model
from tfdl.models.schema import ARCHITECTURES

from .conftest import LM_SPEC, data_spec, random_inputs

IMAGES, SEQUENCE, FEATURES = (8, 8, 1), (8, 2), (6,)
# What a supervised architecture reads; any other gets flat features, so a new image net
# fails on them loudly rather than going unchecked.
INPUTS = {
    "cnn2d": IMAGES,
    "resnet": IMAGES,
    "cnn1d": SEQUENCE,
    "simple_rnn": SEQUENCE,
    "lstm": SEQUENCE,
    "gru": SEQUENCE,
    "transformer_encoder": SEQUENCE,
}
# One block per stack where the blocks' tracing would dominate the fitting check's time
# (every default is built in the first test).
SMALL = {
    "resnet": {"blocks_per_stage": 1},
    "transformer_encoder": {"num_layers": 1},
    "transformer_decoder": {"num_layers": 1},
    "transformer_seq2seq": {"num_encoder_layers": 1, "num_decoder_layers": 1},
}
STEPS = 30


def impls(arch):
    """The `impl` choices of an architecture (keras, scratch), or (None,) when it has none."""
    field = ARCHITECTURES[arch].model_fields.get("impl")
    return get_args(field.annotation) if field else (None,)


def case_id(*parts):
    return "-".join(p for p in parts if p)


CASES = [
    pytest.param(arch, impl, id=case_id(arch, impl))
    for arch in sorted(ARCHITECTURES)
    for impl in impls(arch)
]
TASK_CASES = [
    pytest.param(arch, impl, task, id=case_id(arch, impl, task))
    for arch in sorted(ARCHITECTURES)
    for impl in impls(arch)
    for task in ARCHITECTURES[arch].tasks
]


def model_config(arch, impl, **hparams):
    return ARCHITECTURES[arch](arch=arch, **({} if impl is None else {"impl": impl}), **hparams)


def spec_for(arch, task, date_data):
    if task == "seq2seq":
        return date_data.spec
    if task == "language_model":
        return LM_SPEC
    return data_spec(INPUTS.get(arch, FEATURES), task)


def task_loss(model_cfg, spec):
    """The loss a pipeline with this model compiles for the spec's task (`loss: auto`).

    The data section only has to be valid: `resolve` takes the task from the spec.
    """
    pipeline = validate({"data": {"source": "digits"}, "model": model_cfg.model_dump()})
    return resolve(pipeline, spec).train.loss


def task_batch(spec, date_data, n=16):
    """A small batch whose targets follow from the inputs, so a few steps can fit it."""
    rng = np.random.default_rng(0)
    if spec.task == "seq2seq":
        return take(date_data.x, slice(n)), date_data.y[:n]
    if spec.task == "language_model":  # each window counts up from a random character
        ids = rng.integers(0, spec.num_classes, (n, 1)) + np.arange(spec.input_shape[0] + 1)
        ids = (ids % spec.num_classes).astype("int32")
        return ids[:, :-1], ids[:, 1:]
    x = random_inputs(spec.input_shape, n)
    flat = x.reshape(n, -1)
    scores = flat @ rng.normal(size=(flat.shape[1], spec.output_units)) / np.sqrt(flat.shape[1])
    y = {
        "binary": scores > 0,  # linearly separable: even the perceptron can fit it
        "multiclass": scores.argmax(axis=1),
        "regression": scores,
    }[spec.task]
    return x, y.astype("int32" if spec.task == "multiclass" else "float32")


def predict(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def layer_classes(model):
    """(class, module) of everything the model's saved config names: layers, the cells
    inside recurrent layers, nested models, initializers."""

    def walk(node):
        if isinstance(node, dict):
            if "class_name" in node:
                yield node["class_name"], node.get("module")
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    return set(walk(json.loads(model.to_json())))


@pytest.mark.parametrize(("arch", "impl", "task"), TASK_CASES)
def test_defaults_build_an_output_that_fits_the_task_and_its_loss(arch, impl, task, date_data):
    cfg = model_config(arch, impl)
    spec = spec_for(arch, task, date_data)
    keras.utils.set_random_seed(0)
    model = build_model(cfg, spec)
    x, y = task_batch(spec, date_data, n=4)
    out = predict(model, x)
    # one value per sample (binary, regression), else a distribution per sample or token
    assert out.shape == (y.shape if spec.output_units == 1 else (*y.shape, spec.output_units))
    assert np.isfinite(out).all()

    loss = task_loss(cfg, spec)
    per_sample = keras.ops.convert_to_numpy(keras.losses.get(loss)(y, out))
    assert per_sample.shape[0] == 4 and np.isfinite(per_sample).all()
    if "crossentropy" not in loss:  # a squared or absolute error: any real value
        assert model.get_layer("output").activation.__name__ == "linear"
    else:  # Keras's cross-entropies take probabilities, not logits
        assert ((out >= 0) & (out <= 1)).all()
        if spec.output_units > 1:
            np.testing.assert_allclose(out.sum(axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("arch", [a for a in sorted(ARCHITECTURES) if "scratch" in impls(a)])
def test_scratch_swaps_keras_layers_for_the_lecture_layers(arch, date_data):
    spec = spec_for(arch, ARCHITECTURES[arch].tasks[0], date_data)
    keras_made, scratch_made = (
        layer_classes(build_model(model_config(arch, impl), spec)) for impl in ("keras", "scratch")
    )
    assert keras_made - scratch_made  # some Keras layer was replaced...
    # ...by a lecture layer (a scratch RNN cell comes inside Keras's own RNN wrapper)
    assert any(module.startswith("tfdl.layers") for _, module in scratch_made - keras_made)


@pytest.fixture(scope="module")
def fitted(date_data):
    """fitted(arch, impl) -> (model, x, losses): the model for the architecture's first
    task after STEPS optimizer steps on one small batch; fitted once for both tests."""
    cache = {}

    def fit(arch, impl):
        if (arch, impl) not in cache:
            cfg = model_config(arch, impl, **SMALL.get(arch, {}))
            spec = spec_for(arch, ARCHITECTURES[arch].tasks[0], date_data)
            keras.utils.set_random_seed(0)
            model = build_model(cfg, spec)
            # A step large enough for a single neuron to fit in STEPS; post-norm attention
            # blocks collapse to chance that high without a warm-up (their pipelines: 2e-3).
            rate = 1e-3 if "d_model" in type(cfg).model_fields else 3e-2
            model.compile(keras.optimizers.Adam(rate), loss=task_loss(cfg, spec))
            x, y = task_batch(spec, date_data)
            losses = [float(model.train_on_batch(x, y)) for _ in range(STEPS)]
            cache[arch, impl] = model, x, losses
        return cache[arch, impl]

    return fit


@pytest.mark.parametrize(("arch", "impl"), CASES)
def test_a_few_steps_lower_the_loss(arch, impl, fitted):
    _, _, losses = fitted(arch, impl)
    assert np.isfinite(losses).all(), losses
    assert losses[-1] < 0.6 * losses[0], losses


@pytest.mark.parametrize(("arch", "impl"), CASES)
def test_a_keras_file_predicts_what_the_model_did(arch, impl, fitted, tmp_path):
    model, x, _ = fitted(arch, impl)  # trained: weights and batch-norm statistics moved
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert layer_classes(loaded) == layer_classes(model)  # lecture layers come back as such
    np.testing.assert_allclose(predict(loaded, x), predict(model, x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_the_lecture_loop_trains_every_architecture(arch, date_data):
    """`train.loop: custom` on the same small batch: it lowers the loss and logs what
    fit would (the task's metric, and its val_ twin)."""
    cfg = model_config(arch, None if impls(arch) == (None,) else "keras", **SMALL.get(arch, {}))
    spec = spec_for(arch, ARCHITECTURES[arch].tasks[0], date_data)
    keras.utils.set_random_seed(0)
    model = build_model(cfg, spec)
    rate = 1e-3 if "d_model" in type(cfg).model_fields else 3e-2
    names = [TASK_METRICS[spec.task][0]]
    metrics = make_metrics(names, spec.task)
    model.compile(keras.optimizers.Adam(rate), loss=task_loss(cfg, spec), metrics=metrics)
    batch = tf.data.Dataset.from_tensors(task_batch(spec, date_data))
    history = gradient_descent(
        model,
        batch.repeat(),
        validation_data=batch,
        epochs=3,
        steps_per_epoch=10,
        verbose=0,
        metric_names=names,
        task=spec.task,
    ).history
    assert sorted(history) == sorted([*names, "loss", *(f"val_{n}" for n in (*names, "loss"))])
    # Training-mode losses: batch norm's moving statistics lag behind 30 steps of one batch.
    assert history["loss"][-1] < 0.6 * history["loss"][0], history["loss"]
