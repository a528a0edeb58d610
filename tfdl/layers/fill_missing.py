"""Missing values filled inside the model, so a served model takes rows with gaps."""

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="tfdl")
class FillMissing(keras.layers.Layer):
    """y = x where x is a number, else the value fitted on the training split for that
    input (its mean, or zero): scikit-learn's SimpleImputer as a layer. Keras has no
    imputation layer; the values are part of the config, so the saved model rebuilds it."""

    def __init__(self, values, **kwargs):
        super().__init__(**kwargs)
        self.values = np.asarray(values, dtype="float32")

    def call(self, inputs):
        values = ops.cast(ops.convert_to_tensor(self.values), inputs.dtype)
        return ops.where(ops.isnan(inputs), values, inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "values": self.values.tolist()}
