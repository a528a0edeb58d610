"""The perceptron / dense layer from the lecture, written from scratch."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfdl")
class PerceptronDense(keras.layers.Layer):
    """Fully connected layer: ``y = g(w0 + X^T W)``.

    Each output unit is a perceptron: a weighted sum of the inputs plus a bias,
    passed through a non-linearity ``g``. For a batch ``X`` of shape
    ``(..., input_dim)`` this is ``g(X @ W + w0)`` with ``W`` of shape
    ``(input_dim, units)`` and ``w0`` of shape ``(units,)``.

    Equivalent to ``keras.layers.Dense``: the weights are created in the same
    order and with the same shapes and names (``kernel``, ``bias``), so
    ``scratch.set_weights(dense.get_weights())`` copies one to one.

    Args:
        units: number of output units (perceptrons).
        activation: non-linearity ``g``; anything ``keras.activations.get``
            accepts. ``None`` means identity.
        use_bias: whether to add the bias ``w0``.
        kernel_initializer: initializer for ``W``.
        bias_initializer: initializer for ``w0``.
    """

    def __init__(
        self,
        units,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(units, int) or units <= 0:
            raise ValueError(f"`units` must be a positive integer, got {units!r}.")
        self.units = units
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        # Like Dense: pass a Keras mask (e.g. from Embedding(mask_zero=True)) through.
        self.supports_masking = True

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError("The last dimension of the input to PerceptronDense must be known.")
        # Named like Dense's weights so checkpoints and weight paths line up.
        self.W = self.add_weight(
            shape=(input_dim, self.units), initializer=self.kernel_initializer, name="kernel"
        )
        if self.use_bias:
            self.w0 = self.add_weight(
                shape=(self.units,), initializer=self.bias_initializer, name="bias"
            )
        else:
            self.w0 = None

    def call(self, inputs):
        # matmul contracts the last input axis, so any leading batch/time axes work.
        z = ops.matmul(inputs, self.W)
        if self.w0 is not None:
            z = ops.add(z, self.w0)
        return self.activation(z)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
