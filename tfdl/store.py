"""Where runs go, without importing MLflow: the CLI's `ui` and `list` need only this.

Default store: `sqlite:///<project>/mlruns/mlflow.db` with artifacts under
`<project>/mlruns/artifacts/`, whatever the working directory. MLFLOW_TRACKING_URI
overrides it (another sqlite file, or a team's tracking server).
"""

import os
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
STORE = PROJECT / "mlruns"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{STORE / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite store; None for a tracking server."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def artifact_root(uri: str) -> Path | None:
    """Where a sqlite store keeps artifacts: beside its database. A server decides itself."""
    db = sqlite_path(uri)
    return db.parent / "artifacts" if db else None


def run_dir(run_id: str) -> Path:
    """A run's working folder inside the store: its epoch backup and best checkpoint."""
    root = artifact_root(tracking_uri())
    return (root.parent if root else STORE) / "backups" / run_id
