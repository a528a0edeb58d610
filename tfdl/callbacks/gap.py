"""The train/validation gap each epoch: the overfitting signal the lectures plot."""

import keras

HIGHER_IS_BETTER = ("accuracy", "auc", "precision", "recall")


class GeneralisationGap(keras.callbacks.Callback):
    """Adds `gap_<name>` for every metric with a validation twin, signed so that a
    positive gap means the model does better on its training data (val_loss - loss,
    accuracy - val_accuracy)."""

    def on_epoch_end(self, epoch, logs=None):
        if not logs:
            return
        for name in [k for k in logs if f"val_{k}" in logs]:
            train, val = float(logs[name]), float(logs[f"val_{name}"])
            logs[f"gap_{name}"] = train - val if name in HIGHER_IS_BETTER else val - train
