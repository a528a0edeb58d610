"""On a GPU: throughput with and without mixed precision and XLA. Skipped on a CPU."""

import keras
import tensorflow as tf

from benchmarks.clock import median
from benchmarks.throughput import MODELS, setup, tfdl_way


def gpu_name() -> str | None:
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    return tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)


def measure(name="cnn2d", epochs=4, repeats=3):
    """samples/s of tfdl's run with each of float32 / mixed_float16 and XLA off / on."""
    results = {}
    for policy in ("float32", "mixed_float16"):
        for xla in (False, True):
            prepared = setup(MODELS[name], epochs, [f"train.jit_compile={str(xla).lower()}"])
            runs = []
            for _ in range(repeats):
                keras.mixed_precision.set_global_policy(policy)
                clock, _, _ = tfdl_way(prepared)
                runs.append(len(prepared.splits.y_train) / clock.steady())
            results[f"{policy} xla={xla}"] = median(runs)
    keras.mixed_precision.set_global_policy("float32")
    return results
