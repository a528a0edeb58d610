"""Every shipped pipeline validates, loads its data and builds its model (no training)."""

import keras
import pytest

from tfdl.config import load_pipeline
from tfdl.data.shapes import make_shapes
from tfdl.prepared import prepare
from tfdl.training import build

from .conftest import PROJECT
from .test_keras_datasets import write_keras_set
from .test_keras_texts import WRITERS as TEXT_WRITERS
from .test_text import CORPUS

# The lecture demonstrations (make lectures) live in pipelines/lectures/.
PIPELINES = sorted((PROJECT / "pipelines").rglob("*.yaml"))


def offline(path, folder) -> list[str]:
    """Overrides that let a shipped pipeline run here, offline and small: its data, where
    it would be downloaded or made first, written into `folder` in the same format."""
    overrides = []
    raw = load_pipeline(path)
    if raw.data.source == "abc_tunes":  # offline here: a small corpus stands in for the download
        corpus = folder / "tunes.abc"
        corpus.write_text(CORPUS)
        overrides = [f"data.path={corpus}", "data.sequence_length=40"]
    if raw.data.source in ("mnist", "fashion_mnist", "cifar10", "cifar100"):
        # offline here: a small copy in the format Keras caches stands in for the download
        overrides = [f"data.path={write_keras_set(raw.data.source, folder)}"]
    if raw.data.source in ("imdb", "reuters"):  # offline here: a small copy, as Keras caches it
        overrides = [f"data.path={TEXT_WRITERS[raw.data.source](folder)}"]
    if raw.data.source == "image_folder":  # the example folder, smaller
        make_shapes(folder / "shapes", per_class=6, size=16)
        overrides = [f"data.path={folder / 'shapes'}"]
    if raw.data.source in ("mnist1d", "dates"):  # fewer samples, same shapes
        overrides.append(
            "data.num_samples=200" if raw.data.source == "mnist1d" else "data.n_samples=300"
        )
    return overrides


@pytest.mark.parametrize(
    "path", PIPELINES, ids=lambda p: str(p.relative_to(PROJECT / "pipelines").with_suffix(""))
)
def test_a_shipped_pipeline_builds(path, tmp_path):
    p = prepare(load_pipeline(path, offline(path, tmp_path)))
    cfg = p.cfg
    model = build(p)
    assert isinstance(model, keras.Model) and model.optimizer is not None
    assert cfg.model.arch in path.read_text() and cfg.description  # `tfdl list` shows it


def test_every_architecture_has_a_shipped_pipeline():
    import yaml

    from tfdl.models.schema import ARCHITECTURES

    shipped = {yaml.safe_load(p.read_text())["model"]["arch"] for p in PIPELINES}
    assert set(ARCHITECTURES) - shipped == set()


@pytest.mark.parametrize("path", sorted((PROJECT / "tuning").glob("*.yaml")), ids=lambda p: p.stem)
def test_a_shipped_search_job_loads(path):
    from tfdl.config import load_tuning

    job, base = load_tuning(path)  # every trial its space allows is a valid pipeline
    assert job.description and base["data"]["source"]
