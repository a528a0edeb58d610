"""A logged model as a TensorFlow SavedModel: the graph and weights alone, which TensorFlow
Serving, TFLite's converter or plain `tf.saved_model.load` take without Keras or tfdl."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tfdl.errors import ConfigError

FOLDER = "a new or empty folder"


def check_output(path: str) -> Path:
    """The folder to export into: one that does not exist yet and can be created, or an
    empty one. Anything else is a ConfigError before a model loads or a file is written."""
    folder = Path(path)
    if folder.exists():
        if not folder.is_dir():
            raise ConfigError("output", f"{path} is a file", FOLDER)
        if any(folder.iterdir()):
            raise ConfigError("output", f"{path} is not empty", FOLDER)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError("output", f"{path} is not writable", FOLDER)
        return folder
    parent = next(p for p in folder.absolute().parents if p.exists())  # where it would start
    if not parent.is_dir():
        raise ConfigError("output", f"cannot create {path}: {parent} is not a folder", FOLDER)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError("output", f"cannot create {path}: {parent} is not writable", FOLDER)
    return folder


def export_saved_model(model, folder: Path) -> None:
    """Keras's own export, a `serve` endpoint and the `serving_default` signature over the
    model's inputs, calling the model as `predict` does (`training=False`): `model.export`
    calls it without, which would leave random augmentation on. A failed or interrupted
    export leaves nothing behind."""
    import keras
    import tensorflow as tf

    created = folder.absolute()  # the first folder the export creates, if any
    while not created.parent.exists():
        created = created.parent
    existed = folder.exists()
    specs = [tf.TensorSpec(t.shape, t.dtype, name=t.name) for t in model.inputs]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve", lambda *x: model(x[0] if len(x) == 1 else list(x), training=False), specs
    )
    try:
        archive.write_out(str(folder), verbose=False)
    except BaseException:
        for written in folder.iterdir() if existed else [created]:
            if written.is_dir():
                shutil.rmtree(written, ignore_errors=True)
            else:
                written.unlink(missing_ok=True)
        raise


def signature_line(model) -> str:
    """What `serve` takes, e.g. `float32 (None, 8, 8, 1)`."""
    return ", ".join(f"{t.dtype} {tuple(t.shape)}" for t in model.inputs)
