"""The digits MLP and CNN of pipelines/mlp.yaml and cnn2d.yaml written by hand in plain
Keras, as a script without tfdl would: the other side of the time-to-goal comparison in
benchmarks/accuracy.py.

    python -m benchmarks.plain_digits mlp|cnn [--goal 0.97] [--out FILE]
    python -m benchmarks.plain_digits mlp --epochs 30 --no-stop   # benchmarks/whole_run.py

The same split (stratified, 15% test then 15% validation, seed 42), scaling (scikit-learn's
StandardScaler fitted on the training split), layers, optimizer and callbacks; NumPy
arrays into model.fit with Keras's default compile settings. Writes (or prints) JSON: each
epoch's wall-clock end (time.time()), its validation and test accuracy; `--goal` stops
training at the first epoch whose test accuracy reaches it.

`--no-stop` trains every epoch (`--epochs`, the pipeline's by default) with no callbacks:
no early stopping, no plateau, no test-accuracy clock. Its JSON: the epochs trained, the
final learning rate and the test accuracy.
"""

import argparse
import json
import time

import keras
import numpy as np
from keras import layers
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

SEED = 42
# Each pipeline's settings, written down as a script would; tests/test_bench_accuracy.py
# checks them against the pipeline files, so the two sides keep training the same model.
SETTINGS = {
    "mlp": {
        "data.source": "digits",
        "model.arch": "deep_mlp",
        "model.units": [128, 64],
        "model.activation": "relu",
        "model.initializer": "he_normal",
        "model.dropout": 0.2,
        "train.epochs": 30,
        "train.batch_size": 32,
        "train.optimizer.name": "adam",
        "train.optimizer.learning_rate": 0.001,
        "callbacks.early_stopping.monitor": "val_loss",
        "callbacks.early_stopping.patience": 5,
        "callbacks.early_stopping.restore_best_weights": True,
        "callbacks.reduce_lr_on_plateau.monitor": "val_loss",
        "callbacks.reduce_lr_on_plateau.factor": 0.5,
        "callbacks.reduce_lr_on_plateau.patience": 3,
    },
    "cnn": {
        "data.source": "digits",
        "data.as_images": True,
        "model.arch": "cnn2d",
        "model.filters": [32, 64],
        "model.kernel_size": 3,
        "model.pool": "average",
        "model.batch_norm": True,
        "model.dense_units": [64],
        "model.dropout": 0.25,
        "model.augment.rotation": 0.05,
        "train.epochs": 40,
        "train.batch_size": 32,
        "train.optimizer.name": "adam",
        "train.optimizer.learning_rate": 0.001,
        "callbacks.early_stopping.monitor": "val_loss",
        "callbacks.early_stopping.patience": 8,
        "callbacks.early_stopping.restore_best_weights": True,
        "callbacks.reduce_lr_on_plateau.monitor": "val_loss",
        "callbacks.reduce_lr_on_plateau.factor": 0.5,
        "callbacks.reduce_lr_on_plateau.patience": 4,
    },
}


def data(images: bool):
    digits = load_digits()
    x, y = digits.data.astype("float32"), digits.target
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=0.15, stratify=y, random_state=SEED
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=0.15 / 0.85, stratify=y_rest, random_state=SEED
    )
    scaler = StandardScaler().fit(x_train)
    shape = (-1, 8, 8, 1) if images else (-1, 64)
    x_train, x_val, x_test = (scaler.transform(a).reshape(shape) for a in (x_train, x_val, x_test))
    return (x_train, y_train), (x_val, y_val), (x_test, y_test)


def mlp(s):
    hidden = []
    for units in s["model.units"]:
        dense = layers.Dense(
            units, activation=s["model.activation"], kernel_initializer=s["model.initializer"]
        )
        hidden += [dense, layers.Dropout(s["model.dropout"])]
    return keras.Sequential([keras.Input((64,)), *hidden, layers.Dense(10, activation="softmax")])


def cnn(s):
    pool = {"max": layers.MaxPooling2D, "average": layers.AveragePooling2D}[s["model.pool"]]
    blocks = []
    for filters in s["model.filters"]:  # batch norm's beta replaces the convolution's bias
        blocks += [
            layers.Conv2D(filters, s["model.kernel_size"], padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.Activation("relu"),
            pool(2, padding="same"),
        ]
    head = [layers.Flatten(), layers.Dropout(s["model.dropout"])]
    for units in s["model.dense_units"]:
        head += [layers.Dense(units, activation="relu"), layers.Dropout(s["model.dropout"])]
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            layers.RandomRotation(s["model.augment.rotation"]),
            *blocks,
            *head,
            layers.Dense(10, activation="softmax"),
        ]
    )


class TestAccuracy(keras.callbacks.Callback):
    """Each epoch's wall-clock end, validation and test accuracy; training stops once the
    test accuracy reaches `goal`. One forward pass over the test inputs as the model takes
    them: a few milliseconds, the same in every script that times with it."""

    def __init__(self, x_test, y_test, goal=None):
        super().__init__()
        self.x, self.y, self.goal, self.epochs = x_test, np.asarray(y_test), goal, []

    def on_epoch_end(self, epoch, logs=None):
        end = time.time()
        predicted = np.argmax(self.model(self.x, training=False), axis=-1)
        accuracy = float(np.mean(predicted == self.y))
        self.epochs.append([end, float(logs["val_accuracy"]), accuracy])
        if self.goal is not None and accuracy >= self.goal:
            self.model.stop_training = True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(SETTINGS))
    parser.add_argument("--goal", type=float, help="stop once the test accuracy reaches it")
    parser.add_argument("--out", help="write the JSON here instead of printing it")
    parser.add_argument("--epochs", type=int, help="epochs to train (default: the pipeline's)")
    parser.add_argument(
        "--no-stop",
        action="store_true",
        help="train every epoch: no early stopping, plateau or test-accuracy clock",
    )
    args = parser.parse_args(argv)
    if args.no_stop and args.goal is not None:
        parser.error("--goal needs the test-accuracy clock, which --no-stop leaves out")
    s = SETTINGS[args.model]

    keras.utils.set_random_seed(SEED)
    train, val, test = data(images=s.get("data.as_images", False))
    model = mlp(s) if args.model == "mlp" else cnn(s)
    model.compile(
        optimizer=keras.optimizers.Adam(s["train.optimizer.learning_rate"]),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    clock = TestAccuracy(*test, goal=args.goal)
    stop, plateau = "callbacks.early_stopping", "callbacks.reduce_lr_on_plateau"
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor=s[f"{stop}.monitor"],
            patience=s[f"{stop}.patience"],
            restore_best_weights=s[f"{stop}.restore_best_weights"],
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor=s[f"{plateau}.monitor"],
            factor=s[f"{plateau}.factor"],
            patience=s[f"{plateau}.patience"],
        ),
        clock,
    ]
    if args.no_stop:  # every epoch at a constant rate, nothing else per epoch
        callbacks = []
    history = model.fit(
        *train,
        batch_size=s["train.batch_size"],
        epochs=args.epochs or s["train.epochs"],
        validation_data=val,
        callbacks=callbacks,
        verbose=0,
    )
    _, test_accuracy = model.evaluate(*test, verbose=0)
    if args.no_stop:
        result = {
            "epochs_trained": len(history.epoch),
            "learning_rate": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
        }
    else:
        result = {"epochs": clock.epochs}
    report(result | {"test_accuracy": float(test_accuracy)}, args.out)


def report(result: dict, out: str | None) -> None:
    """The result as JSON, into `out` or printed."""
    text = json.dumps(result)
    if out:
        with open(out, "w") as f:
            f.write(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
