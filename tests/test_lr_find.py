"""The learning-rate sweep: its pick on a known curve, and a real sweep recorded in MLflow."""

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tfdl.callbacks.lr_sweep import LRSweep
from tfdl.cli import main
from tfdl.lr_find import smooth, suggest

from .conftest import TINY


def test_smoothing_is_unbiased_from_the_first_step():
    np.testing.assert_allclose(smooth([2.0] * 10), 2.0)


def test_suggestion_is_where_the_loss_falls_fastest():
    """A loss that drops around lr = 1e-3 and diverges past 1e-1: the pick is near 1e-3."""
    lrs = np.geomspace(1e-7, 10, 200)
    x = np.log10(lrs)
    noise = np.random.default_rng(0).normal(scale=0.02, size=lrs.size)
    losses = 2.3 - 2.0 / (1 + np.exp(-3 * (x + 3))) + np.where(x > -1, (x + 1) ** 2 * 5, 0) + noise
    pick = suggest(lrs, losses)
    assert 1e-4 < pick < 1e-2


def test_the_sweep_rates_grow_geometrically():
    sweep = LRSweep(1e-6, 1.0, 7)
    np.testing.assert_allclose(sweep.rates, [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0])


def test_lr_find_logs_a_sweep_run(store, write_pipeline, capsys):
    path = write_pipeline(TINY)
    assert main(["lr-find", str(path), "--steps", "40", "--min-lr", "1e-5", "--max-lr", "1"]) == 0
    out = capsys.readouterr().out
    suggested = float(out.split("suggested learning rate: ")[1].split()[0])
    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("test").experiment_id])
    assert run.data.tags["tfdl.kind"] == "lr_find" and run.info.status == "FINISHED"
    assert run.data.metrics["suggested_learning_rate"] == pytest.approx(suggested, rel=1e-2)
    lrs = [m.value for m in client.get_metric_history(run.info.run_id, "lr_find/learning_rate")]
    assert lrs[0] == pytest.approx(1e-5) and np.all(np.diff(lrs) > 0) and len(lrs) <= 40
    assert 1e-5 <= suggested <= lrs[-1]
    png = mlflow.artifacts.download_artifacts(f"{run.info.artifact_uri}/lr_find.png")
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args, field",
    [(["--min-lr", "1", "--max-lr", "0.1"], "--min-lr"), (["--steps", "3"], "--steps")],
)
def test_bad_sweep_settings_are_one_line_errors(args, field, write_pipeline, capsys):
    assert main(["lr-find", str(write_pipeline(TINY)), *args]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {field}:")
