"""Where runs go, without importing MLflow: the CLI's `ui` and `list` need only this.

Default store: `sqlite:///<project>/mlruns/mlflow.db` with artifacts under
`<project>/mlruns/artifacts/`, whatever the working directory. MLFLOW_TRACKING_URI
overrides it (another sqlite file, or a team's tracking server).

Several processes may share a sqlite store (a search's workers, trainings started side by
side): `shared` serialises the check-then-create steps, and `open_sqlite` creates a new
database under that lock and puts it in WAL mode.
"""

import contextlib
import os
import sqlite3
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one process at a time there
    fcntl = None

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


@contextlib.contextmanager
def shared(uri: str):
    """One process at a time inside the block for a sqlite store (a no-op for a server).

    Creating the database, its tables or an experiment is check-then-create: processes
    that start together would all see nothing and all create, and all but one fail.
    """
    db = sqlite_path(uri)
    if db is None or fcntl is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


_opened: set[str] = set()


def open_sqlite(uri: str) -> None:
    """Ready a sqlite store for writers in several processes, creating it if it is new.

    WAL journal mode lets readers go on while one process writes, so writers queue only
    behind each other, within the busy timeout MLflow sets on every session (20 s). The
    mode is stored in the database file: set once, it holds for every later process.
    """
    if sqlite_path(uri) is None or uri in _opened:
        return
    from mlflow.tracking import MlflowClient

    with shared(uri):
        with contextlib.closing(sqlite3.connect(sqlite_path(uri), timeout=5)) as db:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                with contextlib.suppress(sqlite3.OperationalError):  # busy: stay as it is
                    db.execute("PRAGMA journal_mode=WAL")
        # MLflow creates the tables and the default experiment on first use, unguarded.
        MlflowClient(uri).get_experiment("0")
    _opened.add(uri)
