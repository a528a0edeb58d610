"""Record the learning rate of each epoch in the epoch logs (and so in History and MLflow)."""

import keras


class LearningRateLogger(keras.callbacks.Callback):
    """Adds `learning_rate` to the epoch logs: the rate in effect at the end of the epoch.

    Keras adds it only when ReduceLROnPlateau or LearningRateScheduler run; here it is
    always there, so every run's curves can be compared.
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(
                keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            )
