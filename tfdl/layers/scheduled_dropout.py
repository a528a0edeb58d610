"""Dropout whose rate is a variable, so a callback can change it while training runs."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfdl")
class ScheduledDropout(keras.layers.Layer):
    """Inverted dropout: y = x * m / (1 - p), m_i ~ Bernoulli(1 - p), in training only.

    keras.layers.Dropout fixes p as a Python float when the training step is traced, so
    changing it later has no effect; here p is a non-trainable variable read at every
    step, and `tfdl.callbacks.dropout_schedule.DropoutScheduler` assigns it each epoch.
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"rate must be in [0, 1), got {rate}")
        self.initial_rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def build(self, input_shape):
        self.rate = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self.initial_rate),
            trainable=False,
            name="rate",
        )

    def call(self, inputs, training=False):
        if not training:
            return inputs
        # The draws are float32, whatever the inputs (float16 under mixed precision).
        drawn = keras.random.uniform(ops.shape(inputs), seed=self.seed_generator)
        keep = drawn >= ops.cast(self.rate, drawn.dtype)
        rate = ops.cast(self.rate, inputs.dtype)
        return ops.where(keep, inputs / (1.0 - rate), ops.zeros_like(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.initial_rate, "seed": self.seed}
