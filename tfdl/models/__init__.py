"""Model builders, one module per lecture family, looked up by architecture name.

A builder is a plain function `build_x(spec, **hparams) -> keras.Model`: the DataSpec sizes
the input and the output layer, the keyword arguments are the hyperparameters.
"""

import importlib

from tfdl.models.schema import ARCHITECTURES


def _resolve(ref: str):
    module, func = ref.split(":")
    return getattr(importlib.import_module(f"tfdl.models.{module}"), func)


def get_builder(arch: str):
    """The builder function registered under `arch` (imports Keras)."""
    return _resolve(ARCHITECTURES[arch].builder)


def get_hook(arch: str, kind: str):
    """The architecture's `generator` or `evaluator` function, or None when it has none."""
    ref = getattr(ARCHITECTURES[arch], kind)
    return _resolve(ref) if ref else None


def build_model(model_cfg, spec):
    """Build the model a pipeline's `model` section describes."""
    return get_builder(model_cfg.arch)(spec, **model_cfg.hparams())
