"""The vanilla recurrent cell from the lecture, written from scratch."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfdl")
class SimpleRNNCellScratch(keras.layers.Layer):
    """Elman RNN cell: ``h_t = tanh(W_hh h_{t-1} + W_xh x_t + b)``.

    One time step of a recurrent network. The same weights are reused at every
    step; the hidden state ``h_t`` is both the output and the state carried to
    the next step. Wrap it in ``keras.layers.RNN`` to run it over a sequence::

        keras.layers.RNN(SimpleRNNCellScratch(32), return_sequences=True)

    In row-vector (batch) form the update is
    ``h_t = g(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)``, so
    ``kernel`` is ``W_xh^T`` with shape ``(input_dim, units)``,
    ``recurrent_kernel`` is ``W_hh^T`` with shape ``(units, units)`` and
    ``bias`` has shape ``(units,)``. These are the names, shapes and order of
    ``keras.layers.SimpleRNNCell``, so weights copy across one to one.
    Dropout and recurrent dropout are not implemented.

    Args:
        units: size of the hidden state ``h``.
        activation: non-linearity ``g`` (``tanh`` in the lecture).
        use_bias: whether to add ``b``.
    """

    def __init__(self, units, activation="tanh", use_bias=True, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, int) or units <= 0:
            raise ValueError(f"`units` must be a positive integer, got {units!r}.")
        self.units = units
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        # keras.layers.RNN reads these to allocate the initial state (zeros) and
        # to know the per-step output size.
        self.state_size = units
        self.output_size = units

    def build(self, input_shape):
        input_dim = input_shape[-1]
        self.kernel = self.add_weight(
            shape=(input_dim, self.units), initializer="glorot_uniform", name="kernel"
        )
        # Orthogonal init keeps repeated multiplication by W_hh from blowing up or
        # vanishing at the start of training (same default as Keras).
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, self.units), initializer="orthogonal", name="recurrent_kernel"
        )
        if self.use_bias:
            self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")
        else:
            self.bias = None

    def call(self, inputs, states, training=None):
        # RNN passes states as a list (one entry per state); we have one: h_{t-1}.
        h_prev = states[0] if isinstance(states, (list, tuple)) else states
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h_prev, self.recurrent_kernel)
        if self.bias is not None:
            z = ops.add(z, self.bias)
        h = self.activation(z)
        new_states = [h] if isinstance(states, (list, tuple)) else h
        return h, new_states

    def get_initial_state(self, batch_size=None):
        # h_0 = 0, as in the lecture.
        return [ops.zeros((batch_size, self.units), dtype=self.compute_dtype)]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
            }
        )
        return config
