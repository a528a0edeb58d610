"""The prepared pipeline: a validated config, its data loaded and split, and the facts
derived from them, made once and handed to training, search trials, the learning-rate
sweep, evaluation and the benchmarks.

Preparing loads the data and resolves the config against its task (`loss: auto`, default
metrics), so every input problem is found here, before TensorFlow is imported and before
any run starts. Nothing downstream works these facts out a second time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from tfdl.compile import logged_names, resolve
from tfdl.data.spec import DataSpec, Splits, take
from tfdl.errors import ConfigError


@dataclass(frozen=True)
class Prepared:
    cfg: object  # the resolved PipelineConfig
    splits: Splits
    path: str | None = None  # the pipeline file, if it came from one (tagged on the run)

    @property
    def spec(self) -> DataSpec:
        return self.splits.spec

    @property
    def one_hot(self) -> bool:
        """Labels fed one-hot: what categorical (not sparse) cross-entropy expects."""
        return self.cfg.train.loss == "categorical_crossentropy"

    @property
    def steps_per_epoch(self) -> int:
        """Batches in one pass over the training split (the last one may be partial)."""
        return math.ceil(len(self.splits.y_train) / self.cfg.train.batch_size)

    @property
    def logged_names(self) -> list[str]:
        """What Keras logs each epoch: loss and metrics, and their val_ versions."""
        return logged_names(self.cfg)

    def dataset(self, split: str, repeat: bool = False):
        """The "train", "val" or "test" split as its tf.data pipeline (imports TensorFlow);
        `repeat`: an endless stream of epochs."""
        from tfdl.data.pipeline import split_dataset

        t, s = self.cfg.train, self.splits
        x, y = getattr(s, f"x_{split}"), getattr(s, f"y_{split}")
        kw = dict(batch_size=t.batch_size, seed=t.seed, one_hot=self.one_hot, repeat=repeat)
        return split_dataset(s, x, y, training=split == "train", **kw)

    def sample(self, size: int = 5):
        """The first `size` test inputs as the model takes them (files read): what a logged
        model's signature and example are made of."""
        from tfdl.data.pipeline import inputs_of

        return inputs_of(self.spec, take(self.splits.x_test, slice(0, size)))

    def probe(self, size: int):
        """A fixed (x, y) batch of the training split as the model sees it."""
        from tfdl.data.pipeline import probe_batch

        return probe_batch(self.splits, size, self.one_hot)

    def with_config(self, cfg) -> Prepared:
        """The same data under a changed config (a trial's verbosity, the sweep's rate)."""
        return replace(self, cfg=resolve(cfg, self.spec))


def prepare(cfg, path: str | None = None, splits: Splits | None = None) -> Prepared:
    """Load the data of a validated pipeline (unless `splits` are given) and resolve it."""
    if splits is None:
        from tfdl.data.split import load_splits

        splits = load_splits(cfg.data, cfg.train.seed)
    _check_image_size(cfg, splits.spec)
    return Prepared(resolve(cfg, splits.spec), splits, path)


def _check_image_size(cfg, spec: DataSpec) -> None:
    """Images a model would shrink to nothing before its last blocks are refused."""
    if not spec.stream or spec.stream["kind"] != "images":
        return
    need = cfg.model.downsampling
    if min(spec.stream["image_size"]) < need:
        h, w = spec.stream["image_size"]
        raise ConfigError(
            "data.image_size",
            f"{h}x{w} images are too small for this {cfg.model.arch}: it shrinks each side "
            f"{need} times before its head",
            f"sides of at least {need} pixels, or fewer pooling blocks",
        )
