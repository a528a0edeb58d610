"""The pipeline and search schemas, YAML loading, dotted overrides, and pydantic errors as
one line.

Config is data, validated once here: past this package, code trusts its inputs. Nothing in
this package imports TensorFlow, NumPy or scikit-learn, so errors answer at once.

schema.py   the pipeline: optimizers, training, tracking (data, model, callbacks: their packages)
tuning.py   the search: its space and objective, and `load_tuning`
loading.py  YAML files, overrides, `validate`, `load_pipeline`
errors.py   a pydantic ValidationError as one ConfigError line
"""

from tfdl.config.errors import to_config_error
from tfdl.config.loading import (
    apply_overrides,
    as_overrides,
    describe,
    flatten,
    load_pipeline,
    parse_override,
    read_yaml,
    validate,
)
from tfdl.config.schema import (
    OPTIMIZERS,
    SECTIONS,
    SGD,
    Adadelta,
    Adagrad,
    Adam,
    AdamW,
    Loss,
    Metric,
    Momentum,
    Nesterov,
    OptimizerConfig,
    PipelineConfig,
    RMSprop,
    TrackingConfig,
    TrainConfig,
)
from tfdl.config.tuning import (
    BoolParam,
    ChoiceParam,
    FloatParam,
    IntParam,
    Objective,
    Param,
    TuningConfig,
    load_tuning,
)

__all__ = [
    "OPTIMIZERS",
    "SECTIONS",
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "BoolParam",
    "ChoiceParam",
    "FloatParam",
    "IntParam",
    "Loss",
    "Metric",
    "Momentum",
    "Nesterov",
    "Objective",
    "OptimizerConfig",
    "Param",
    "PipelineConfig",
    "RMSprop",
    "TrackingConfig",
    "TrainConfig",
    "TuningConfig",
    "apply_overrides",
    "as_overrides",
    "describe",
    "flatten",
    "load_pipeline",
    "load_tuning",
    "parse_override",
    "read_yaml",
    "to_config_error",
    "validate",
]
