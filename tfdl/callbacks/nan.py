"""A NaN or infinite loss ends the run FAILED, saying where it happened."""

import keras


class FailOnNaN(keras.callbacks.TerminateOnNaN):
    """TerminateOnNaN stops training quietly; this raises, so the run is marked FAILED
    with the epoch and batch in its error tag instead of looking finished."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        super().on_batch_end(batch, logs)
        if self.model.stop_training:
            loss = (logs or {}).get("loss")
            raise FloatingPointError(
                f"loss became {loss} at epoch {self.epoch + 1}, batch {batch + 1}; "
                "try a lower learning rate or gradient clipping"
            )
