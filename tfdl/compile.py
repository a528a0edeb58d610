"""What model.compile gets: the optimizer, loss and metrics a pipeline names.

`resolve` fills the task-dependent choices (`loss: auto`, default metrics) and rejects
combinations the task cannot take, before TensorFlow is imported (tfdl.prepared calls it).
"""

from tfdl.errors import ConfigError
from tfdl.models.schema import ARCHITECTURES

AUTO_STEPS = 128  # batches per compiled call for steps_per_execution: auto (measured)
MIN_DIVISOR = 32  # measured as fast as 128 (benchmarks/results/speed.md, "Defaults")

# Loss and metrics each task can take; the first loss is the "auto" choice.
TASK_LOSSES = {
    "binary": ("binary_crossentropy", "mse", "mae", "huber"),
    "multiclass": ("sparse_categorical_crossentropy", "categorical_crossentropy"),
    "regression": ("mse", "mae", "huber"),
    "language_model": ("sparse_categorical_crossentropy",),  # per token, next-token targets
    "seq2seq": ("sparse_categorical_crossentropy",),
}
TASK_METRICS = {
    "binary": ("accuracy", "auc", "precision", "recall"),
    "multiclass": ("accuracy",),
    "regression": ("mae", "mse", "rmse"),
    "language_model": ("accuracy",),
    "seq2seq": ("accuracy",),
}


def resolve(cfg, spec):
    """A copy of the pipeline with loss and metrics resolved for the data set's task."""
    task, arch = spec.task, ARCHITECTURES[cfg.model.arch]
    if task not in arch.tasks:
        able = [name for name, a in ARCHITECTURES.items() if task in a.tasks]
        raise ConfigError(
            "model.arch",
            f"{cfg.model.arch} cannot learn the {task} task of dataset {cfg.data.source!r}",
            ", ".join(able),
        )
    loss = cfg.train.loss
    if loss == "auto":
        # A binary output that is not a sigmoid is no probability: fit it by squared error.
        out = cfg.model.output_activation
        loss = "mse" if task == "binary" and out not in (None, "sigmoid") else TASK_LOSSES[task][0]
    elif loss not in TASK_LOSSES[task]:
        raise ConfigError(
            "train.loss", f"{loss!r} does not fit a {task} task", ", ".join(TASK_LOSSES[task])
        )
    metrics = cfg.train.metrics if cfg.train.metrics is not None else [TASK_METRICS[task][0]]
    for m in metrics:
        if m not in TASK_METRICS[task]:
            raise ConfigError(
                "train.metrics", f"{m!r} does not fit a {task} task", ", ".join(TASK_METRICS[task])
            )
    resolved = cfg.model_copy(deep=True)
    resolved.train.loss, resolved.train.metrics = loss, list(metrics)
    if resolved.data.seed is None:
        resolved.data.seed = cfg.train.seed  # the logged config says which seed split the data
    _check_monitors(resolved)
    _check_distribution(resolved)
    return resolved


def logged_names(cfg) -> list[str]:
    """The names Keras logs each epoch for this pipeline."""
    names = ["loss", *cfg.train.metrics]
    return names + [f"val_{n}" for n in names]


def _check_monitors(cfg):
    allowed = logged_names(cfg)
    for name, section in cfg.callbacks:
        monitor = getattr(section, "monitor", None)
        if monitor is not None and monitor not in allowed:
            raise ConfigError(
                f"callbacks.{name}.monitor", f"{monitor!r} is not logged", ", ".join(allowed)
            )


def _check_distribution(cfg):
    t = cfg.train
    if t.distribution != "none" and t.steps_per_execution not in ("auto", 1):
        # Keras 3.15's loop over several steps per call fails under a tf.distribute strategy
        # (a placeholder left unfed in its while loop).
        raise ConfigError(
            "train.steps_per_execution",
            f"Keras runs one step per call with distribution {t.distribution!r}",
            "auto or 1",
        )
    if t.loop == "custom" and t.distribution != "none":
        # The lecture's loop steps one device; fit splits each batch between replicas.
        raise ConfigError(
            "train.loop",
            f"the lecture's loop trains on one device, not with distribution {t.distribution!r}",
            "fit, or train.distribution: none",
        )


# --------------------------------------------------------------- Keras objects (imports Keras)


def make_optimizer(opt, learning_rate=None):
    """A Keras optimizer from the `train.optimizer` section; `learning_rate` may be a
    schedule that replaces the section's constant rate."""
    import keras

    clip = {
        k: getattr(opt, k) for k in ("clipnorm", "clipvalue", "global_clipnorm") if getattr(opt, k)
    }
    lr = opt.learning_rate if learning_rate is None else learning_rate
    match opt.name:
        case "sgd":
            return keras.optimizers.SGD(lr, **clip)
        case "momentum" | "nesterov":
            return keras.optimizers.SGD(
                lr, momentum=opt.momentum, nesterov=opt.name == "nesterov", **clip
            )
        case "adagrad":
            return keras.optimizers.Adagrad(
                lr,
                initial_accumulator_value=opt.initial_accumulator_value,
                epsilon=opt.epsilon,
                **clip,
            )
        case "adadelta":
            return keras.optimizers.Adadelta(lr, rho=opt.rho, epsilon=opt.epsilon, **clip)
        case "rmsprop":
            return keras.optimizers.RMSprop(
                lr, rho=opt.rho, momentum=opt.momentum, epsilon=opt.epsilon, **clip
            )
        case "adam" | "adamw":
            kwargs = dict(
                beta_1=opt.beta_1, beta_2=opt.beta_2, epsilon=opt.epsilon, amsgrad=opt.amsgrad
            )
            if opt.name == "adamw":
                return keras.optimizers.AdamW(lr, weight_decay=opt.weight_decay, **kwargs, **clip)
            return keras.optimizers.Adam(lr, **kwargs, **clip)
    raise AssertionError(opt.name)  # the schema admits no other name


def make_metrics(names, task: str, one_hot: bool = False):
    """Keras metric objects named as the config names them, so logs use those names;
    `one_hot`: the labels are one-hot (categorical accuracy)."""
    import keras

    sparse = keras.metrics.SparseCategoricalAccuracy
    accuracy = {
        "binary": keras.metrics.BinaryAccuracy,
        "multiclass": keras.metrics.CategoricalAccuracy if one_hot else sparse,
        "language_model": sparse,  # per token
        "seq2seq": sparse,
    }
    make = {
        "accuracy": lambda: accuracy[task](name="accuracy"),
        "auc": lambda: keras.metrics.AUC(name="auc"),
        "precision": lambda: keras.metrics.Precision(name="precision"),
        "recall": lambda: keras.metrics.Recall(name="recall"),
        "mae": lambda: keras.metrics.MeanAbsoluteError(name="mae"),
        "mse": lambda: keras.metrics.MeanSquaredError(name="mse"),
        "rmse": lambda: keras.metrics.RootMeanSquaredError(name="rmse"),
    }
    return [make[n]() for n in names]


def compile_model(model, prepared):
    """Compile with the prepared pipeline's optimizer (and learning-rate schedule), loss
    and metrics."""
    from tfdl.callbacks.lr_schedules import make_lr_schedule

    cfg, steps = prepared.cfg, prepared.steps_per_epoch
    loss, schedule = cfg.train.loss, cfg.callbacks.lr_schedule
    lr = cfg.train.optimizer.learning_rate
    if schedule is not None:
        lr = make_lr_schedule(schedule, lr, steps, cfg.train.epochs)
    model.compile(
        optimizer=make_optimizer(cfg.train.optimizer, lr),
        loss=loss,
        metrics=make_metrics(cfg.train.metrics, prepared.spec.task, prepared.one_hot),
        steps_per_execution=steps_per_execution(cfg.train, steps),
        jit_compile=jit_compile(cfg),
    )
    return model


def jit_compile(cfg) -> bool | str:
    """XLA as configured; for "auto", on where measured faster for the architecture (not
    for deterministic runs), else Keras's choice (on a GPU when the model supports it)."""
    if cfg.train.jit_compile != "auto":
        return cfg.train.jit_compile
    if cfg.train.deterministic:
        return False
    return True if ARCHITECTURES[cfg.model.arch].xla_on_cpu else "auto"


def steps_per_execution(train, steps_per_epoch: int) -> int:
    """The configured number, or for "auto" up to AUTO_STEPS batches per call: the largest
    number that divides the epoch's steps when one of at least MIN_DIVISOR does (fit then
    reads one repeated stream, see tfdl.training.fit), else AUTO_STEPS (at most an epoch);
    one under a train.distribution."""
    if train.steps_per_execution != "auto":
        return train.steps_per_execution
    if getattr(train, "distribution", "none") != "none":
        return 1  # what Keras can run under a strategy (tfdl.compile._check_distribution)
    if steps_per_epoch <= AUTO_STEPS:
        return max(1, steps_per_epoch)
    divisor = max(d for d in range(1, AUTO_STEPS + 1) if steps_per_epoch % d == 0)
    return divisor if divisor >= MIN_DIVISOR else AUTO_STEPS
