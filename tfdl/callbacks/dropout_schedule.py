"""Drive every ScheduledDropout layer's rate from a schedule, epoch by epoch."""

import keras

from tfdl.layers import ScheduledDropout


def dropout_layers(model) -> list[ScheduledDropout]:
    return [
        la for la in model._flatten_layers(include_self=False) if isinstance(la, ScheduledDropout)
    ]


class DropoutScheduler(keras.callbacks.Callback):
    """Sets the rate of the model's dropout layers at the start of each epoch from
    `schedule(epoch)` and adds the rate in effect to the epoch logs as `dropout_rate`."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule
        self.rate = None

    def on_epoch_begin(self, epoch, logs=None):
        self.rate = float(self.schedule(epoch))
        for layer in dropout_layers(self.model):
            layer.rate.assign(self.rate)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["dropout_rate"] = self.rate
