"""Inputs and output layers shared by every builder: the task decides the output."""

import keras
import numpy as np

# The output non-linearity that turns scores into the task's prediction.
TASK_ACTIVATION = {"binary": "sigmoid", "multiclass": "softmax", "regression": "linear"}


def inputs_for(spec, flatten: bool = False, masked: bool = False):
    """The model's raw input, scaled by the normalisation fitted on the training split (so
    the model takes inputs as a user has them); `flatten` turns images or sequences into
    one feature vector. A text comes in as strings and leaves as word vectors (one per
    word; their mean when flattened); `masked`: the padding after a text is masked, for
    layers that skip masked steps (recurrent ones)."""
    if spec.text and not spec.table:
        text = keras.Input(shape=(), dtype="string", name="text")
        return text, words(spec.text, "text", pooled=flatten, masked=masked or flatten)(text)
    numbers = keras.Input(shape=spec.input_shape, name="features" if spec.table else "inputs")
    x = numbers
    if spec.fill is not None:  # gaps first: the scaling's statistics are of filled data
        from tfdl.layers import FillMissing

        x = FillMissing(spec.fill["values"], name="fill_missing")(x)
    if spec.normalizer is not None:
        x = normalization(spec.normalizer)(x)
    if spec.table:  # one input per category or text column beside the numbers
        inputs, parts = {"features": numbers}, [x]
        for i, (name, kind) in enumerate((spec.categorical or {}).items()):
            inputs[name] = keras.Input(shape=(), dtype=kind["dtype"], name=name)
            parts.append(category_lookup(kind, f"lookup_{i}")(inputs[name]))
        if spec.text:
            name = spec.text["column"]
            inputs[name] = keras.Input(shape=(), dtype="string", name=name)
            parts.append(words(spec.text, "text", pooled=True, masked=True)(inputs[name]))
        return inputs, keras.layers.Concatenate(name="table")(parts)
    if flatten and len(spec.input_shape) > 1:
        x = keras.layers.Flatten(name="flatten")(x)
    return numbers, x


def words(text: dict, name: str, pooled: bool, masked: bool) -> keras.Sequential:
    """Strings -> word ids (Keras' TextVectorization with the training split's vocabulary:
    lower case, no punctuation, split on spaces, cut or padded to `sequence_length`) ->
    word vectors (an Embedding; with `masked` id 0, the padding, is masked so recurrent
    layers and the pooling skip it) -> with `pooled`, their mean: a bag of words."""
    vocabulary = list(text["vocabulary"])
    layers = [
        keras.layers.TextVectorization(
            max_tokens=text["max_tokens"],
            output_sequence_length=text["sequence_length"],
            vocabulary=vocabulary or None,
            name=f"{name}_vectorize",
        ),
        # Padding and the out-of-vocabulary id come first, then the vocabulary.
        keras.layers.Embedding(
            len(vocabulary) + 2, text["embedding_dim"], mask_zero=masked, name=f"{name}_embedding"
        ),
    ]
    if pooled:
        layers.append(keras.layers.GlobalAveragePooling1D(name=f"{name}_mean"))
    return keras.Sequential(layers, name=f"{name}_words")


def as_sequence(x, arch: str):
    """(T, C) as it is; a flat (T,) (features, a table) read as T steps of one feature."""
    shape = tuple(x.shape[1:])
    if len(shape) == 1:
        return keras.layers.Reshape((shape[0], 1), name="as_sequence")(x)
    if len(shape) != 2:
        raise ValueError(
            f"{arch} reads sequences of shape (steps, channels) or (steps,), got {shape}; "
            "use cnn2d for images"
        )
    return x


def category_lookup(kind: dict, name: str):
    """A category column one-hot over the training split's values, with one more slot
    (the first) for any value it never saw: Keras' StringLookup or IntegerLookup. With
    `encoding: embedding` the value's index picks a learned vector instead."""
    strings = kind["dtype"] == "string"
    lookup = keras.layers.StringLookup if strings else keras.layers.IntegerLookup
    if kind.get("encoding", "one_hot") == "one_hot":
        return lookup(
            vocabulary=kind["vocabulary"], num_oov_indices=1, output_mode="one_hot", name=name
        )
    index = lookup(vocabulary=kind["vocabulary"], num_oov_indices=1, name=f"{name}_index")
    size = len(kind["vocabulary"]) + 1  # the unseen values' index 0, then the vocabulary
    vectors = keras.layers.Embedding(size, kind["embedding_dim"], name=f"{name}_embedding")
    return keras.Sequential([index, vectors], name=name)


def normalization(fitted: dict):
    """(x - mean) / sqrt(variance) per input value: Keras' own layer with the statistics of
    the training split, which stock Keras rebuilds from the saved model's config. Pixels
    (`how: rescale`) are only scaled, x * scale, by Keras' Rescaling."""
    if fitted["how"] == "rescale":
        return keras.layers.Rescaling(fitted["scale"], name="rescale")
    mean = np.asarray(fitted["mean"], dtype="float32")
    axes = tuple(range(1, mean.ndim + 1))  # one statistic per value of a sample
    variance = np.asarray(fitted["variance"], dtype="float32")
    return keras.layers.Normalization(axis=axes, mean=mean, variance=variance, name="normalize")


def dense(impl: str = "keras"):
    """The dense layer class: Keras's, or the lecture's written from add_weight up."""
    if impl == "scratch":
        from tfdl.layers import PerceptronDense

        return PerceptronDense
    return keras.layers.Dense


def dropout(rate: float, name: str):
    """Dropout whose rate `callbacks.dropout_schedule` can change during training."""
    from tfdl.layers import ScheduledDropout

    return ScheduledDropout(rate, name=name)


def output_head(
    x,
    spec,
    activation: str | None = None,
    impl: str = "keras",
    kernel_initializer: str = "glorot_uniform",
):
    """Dense output layer sized by the task: 1 unit (binary, regression) or one per class.

    It computes in float32 even under mixed precision, where float16 would lose the
    small probabilities the loss takes logarithms of.
    """
    activation = activation or TASK_ACTIVATION[spec.task]
    return dense(impl)(
        spec.output_units,
        activation=activation,
        kernel_initializer=kernel_initializer,
        dtype="float32",
        name="output",
    )(x)
