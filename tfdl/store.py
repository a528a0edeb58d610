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
from urllib.parse import urlparse

from tfdl.errors import ConfigError

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


def check_writable() -> None:
    """Refuse a store that cannot take a run before TensorFlow loads, not after training.

    Nothing is created here: a store that does not exist yet is only checked to be creatable.
    """
    uri, field = tracking_uri(), "MLFLOW_TRACKING_URI"
    allowed = "sqlite:///path/to/mlflow.db in a writable folder, or a tracking server's URL"
    db = sqlite_path(uri)
    if db is None:
        opted_in = os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("true", "1")
        if urlparse(uri).scheme in ("", "file") and not opted_in:
            raise ConfigError(field, f"{uri} is a plain folder, which MLflow refuses", allowed)
        return  # a server answers for itself
    if db.exists():
        if not db.is_file():
            raise ConfigError(field, f"{db} is not a file", allowed)
        if not (os.access(db, os.W_OK) and os.access(db.parent, os.W_OK)):
            raise ConfigError(field, f"{db} is not writable", allowed)
        with open(db, "rb") as file:
            header = file.read(16)
        if header and header != b"SQLite format 3\x00":  # an empty file is a new database
            raise ConfigError(field, f"{db} is not an SQLite database", allowed)
        return
    folder = next(p for p in db.parents if p.exists())  # what MLflow would create it in
    if not folder.is_dir():
        raise ConfigError(field, f"cannot create {db}: {folder} is not a folder", allowed)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(field, f"cannot create {db}: {folder} is not writable", allowed)
