"""Inputs and output layers shared by every builder: the task decides the output."""

import keras

# The output non-linearity that turns scores into the task's prediction.
TASK_ACTIVATION = {"binary": "sigmoid", "multiclass": "softmax", "regression": "linear"}


def inputs_for(spec, flatten: bool = False):
    """The model input; `flatten` turns images or sequences into one feature vector."""
    inputs = keras.Input(shape=spec.input_shape, name="inputs")
    x = (
        keras.layers.Flatten(name="flatten")(inputs)
        if flatten and len(spec.input_shape) > 1
        else inputs
    )
    return inputs, x


def output_head(x, spec, activation: str | None = None):
    """Dense output layer sized by the task: 1 unit (binary, regression) or one per class."""
    return keras.layers.Dense(
        spec.output_units, activation=activation or TASK_ACTIVATION[spec.task], name="output"
    )(x)
