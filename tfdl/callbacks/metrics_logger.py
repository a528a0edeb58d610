"""Hand each epoch's logs to the tracker: the stack's last callback, so it sees them all."""

import keras

from tfdl import store


class MetricsLogger(keras.callbacks.Callback):
    """Calls `log(logs, epoch)` at the end of every epoch after the first `logged_epochs`
    (a resumed run repeats the epochs since its last backup; their metrics are logged).

    Training code stays ignorant of the store: the caller passes MLflow's logging
    function. (mlflow.tensorflow.MlflowCallback would also log the optimizer's settings
    as parameters, which the config already holds, and step-less metrics on evaluate.)
    """

    def __init__(self, log, logged_epochs: int = 0):
        super().__init__()
        self.log, self.logged_epochs = log, logged_epochs

    @property
    def every_s(self) -> float:
        """How often `log` writes (and backups wait for it), if it says."""
        return getattr(self.log, "every_s", store.LOG_EVERY_S)

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 > self.logged_epochs:
            self.log(dict(logs or {}), epoch)

    def on_train_end(self, logs=None):
        self.wait()

    def wait(self):
        """Return once every epoch handed over is stored (`log` may hold epochs back and
        write in the background)."""
        getattr(self.log, "wait", lambda: None)()
