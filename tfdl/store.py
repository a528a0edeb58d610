"""Where runs go, without importing MLflow: the CLI's `ui` and `list` need only this.

Default store: `sqlite:///<project>/mlruns/mlflow.db` with artifacts under
`<project>/mlruns/artifacts/`, whatever the working directory. MLFLOW_TRACKING_URI
overrides it (another sqlite file, or a team's tracking server).

Several processes may share a sqlite store (a search's workers, trainings started side by
side): `shared` serialises the check-then-create steps, and `open_sqlite` creates a new
database under that lock and puts it in WAL mode.
"""

import contextlib
import importlib.util
import math
import os
import socket
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
# A training's epochs are logged and backed up at most this often, those of the meantime
# together: one write to the sqlite store costs about 5 ms of CPU, which made a 78 ms epoch
# 15% slower when written every epoch (benchmarks/results/analysis.md), and a backup forces
# the write it depends on. A person watching the run cannot tell a quarter of a second;
# an epoch longer than this is stored as it ends.
LOG_EVERY_S = 0.25
# And no more often than keeps each kind of write (metrics, backups) to this share of the
# run's time: MLflow's log_batch costs 8-18 ms however few metrics it carries, a quarter of
# a second's work when epochs take 30 ms. Whatever a write costs, at least every LOG_MAX_S.
WRITE_SHARE = 0.02
LOG_MAX_S = 5.0


def beat(cost_s: float, every_s: float | None = None) -> float:
    """Seconds between periodic writes that took `cost_s` each: every `every_s` (by
    default LOG_EVERY_S), or as much less often as keeps them to WRITE_SHARE of the time."""
    every_s = LOG_EVERY_S if every_s is None else every_s
    return max(every_s, min(LOG_MAX_S, cost_s / WRITE_SHARE))


class Beat:
    """When a periodic write (epoch metrics, a backup) is due: the first at once, then
    `beat` of the cheapest one seen after the last. `every_s`: seconds, or a function
    giving them (e.g. another Beat's); 0 means every time, whatever a write costs."""

    def __init__(self, every_s=LOG_EVERY_S):
        self._every = every_s if callable(every_s) else (lambda: every_s)
        self.last, self.cost = -math.inf, math.inf  # the first write comes at once

    @property
    def every_s(self) -> float:
        every = self._every()
        return every and beat(self.cost, every)

    def due(self, now: float) -> bool:
        return now - self.last >= self.every_s

    def took(self, seconds: float) -> None:
        self.cost = min(self.cost, seconds)  # the cheapest: what a write costs undisturbed


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


FIELD = "MLFLOW_TRACKING_URI"
ALLOWED = "sqlite:///path/to/mlflow.db in a writable folder, or a tracking server's URL"
# Database stores MLflow takes, by SQLAlchemy dialect: the driver module used when the URI
# names none (postgresql+psycopg2://... names one). SQLAlchemy 2.1 took psycopg (3) for
# postgresql:// where 2.0 took psycopg2: see default_driver.
DIALECTS = {"postgresql": "psycopg", "mysql": "MySQLdb", "mssql": "pyodbc"}
DRIVERS = {"psycopg2": "psycopg2", "psycopg": "psycopg", "pg8000": "pg8000", "pymysql": "pymysql"}
DRIVERS |= {"mysqldb": "MySQLdb", "pyodbc": "pyodbc", "pymssql": "pymssql"}
# What installs a driver, where its package is not named as its module.
INSTALL = {"psycopg": "'psycopg[binary]' (tfdl's server extra)", "psycopg2": "psycopg2-binary"}
INSTALL |= {"MySQLdb": "mysqlclient"}
LIBPQ = ("psycopg2", "psycopg")  # drivers over libpq, which takes a connect_timeout
SERVER_WAIT_S = 3.0  # how long a tracking server (or a database) may take to be reached
BUSY_WAIT_S = 30.0  # how long a server that was reached may take to answer its health check


def check_writable(experiment: str | None = None) -> None:
    """Refuse a store that cannot take a run before TensorFlow loads, not after training:
    a URI of no store MLflow knows, a database whose driver is missing, a server that
    does not answer, a folder that cannot hold the database; and an `experiment` name
    that a deleted experiment still holds.

    Nothing is created here: a store that does not exist yet is only checked to be creatable.
    """
    uri = tracking_uri()
    db = sqlite_path(uri)
    if db is None:
        _check_remote(uri)
    else:
        _check_sqlite(db)
    if experiment is not None and (db is None or db.is_file() and db.stat().st_size):
        _check_experiment(uri, experiment)


def check_reachable() -> None:
    """For commands that only read runs: a store of a kind MLflow knows, which answers."""
    uri = tracking_uri()
    if sqlite_path(uri) is None:
        _check_remote(uri)


def _check_remote(uri: str) -> None:
    scheme = urlparse(uri).scheme.lower()
    dialect = scheme.partition("+")[0]
    opted_in = os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("true", "1")
    if scheme in ("", "file"):
        if not opted_in:
            raise ConfigError(FIELD, f"{uri} is a plain folder, which MLflow refuses", ALLOWED)
    elif scheme == "sqlite":  # sqlite:// alone is a database in memory, gone at exit
        raise ConfigError(FIELD, f"{uri} names no database file", ALLOWED)
    elif scheme in ("http", "https"):
        _check_server(uri)
    elif dialect in DIALECTS:
        module = check_driver(uri, FIELD, "or a sqlite:/// store")
        if module in LIBPQ:
            check_database(uri, module)
    else:
        raise ConfigError(FIELD, f"{scheme}:// is no tracking store MLflow knows", ALLOWED)


def masked(uri: str) -> str:
    """`uri` with its password, if any, shown as ***: fit to print."""
    parts = urlparse(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()


def default_driver(dialect: str) -> str:
    """The driver module SQLAlchemy uses for `dialect://` URIs, as the installed version
    does (read without importing it)."""
    if dialect == "postgresql":
        from importlib.metadata import PackageNotFoundError, version

        with contextlib.suppress(PackageNotFoundError, ValueError):
            if tuple(int(n) for n in version("sqlalchemy").split(".")[:2]) < (2, 1):
                return "psycopg2"
    return DIALECTS[dialect]


def check_driver(uri: str, field: str = FIELD, otherwise: str = "") -> str:
    """The driver module a database URI needs (`postgresql://` takes SQLAlchemy's default,
    `postgresql+psycopg2://` names its own); refused when it is not installed."""
    dialect, _, driver = urlparse(uri).scheme.lower().partition("+")
    module = DRIVERS.get(driver, driver) if driver else default_driver(dialect)
    if importlib.util.find_spec(module) is None:
        problem = f"{uri.split('://')[0]}:// needs the database driver {module}, not installed"
        allowed = f"pip install {INSTALL.get(module, module)}"
        raise ConfigError(field, problem, f"{allowed}, {otherwise}" if otherwise else allowed)
    return module


def check_database(
    uri: str,
    module: str,
    field: str = FIELD,
    allowed: str = "a running PostgreSQL server, or a sqlite:/// store",
) -> None:
    """A PostgreSQL database answers within SERVER_WAIT_S seconds, through the driver
    `module`: MLflow's own first connection retries for about 100 s, a warning each time,
    before its traceback."""
    driver = importlib.import_module(module)
    dsn = urlparse(uri)._replace(scheme="postgresql").geturl()  # libpq's URI, no +driver
    try:
        driver.connect(dsn, connect_timeout=max(1, round(SERVER_WAIT_S))).close()
    except driver.Error as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        problem = f"no database answers at {masked(uri)} ({reason})"
        raise ConfigError(field, problem, allowed) from None


def _check_server(uri: str) -> None:
    """A tracking server is reached within SERVER_WAIT_S seconds and answers its health
    check within BUSY_WAIT_S: one that many trainings start against at once may be slow to
    answer without being gone (through a proxy, the health check alone tells)."""
    import urllib.error
    import urllib.request

    url = uri.rstrip("/") + "/health"
    try:
        parts = urlparse(url)
        proxied = urllib.request.getproxies() and not urllib.request.proxy_bypass(parts.hostname)
        if not proxied:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            socket.create_connection((parts.hostname, port), timeout=SERVER_WAIT_S).close()
        wait = BUSY_WAIT_S if not proxied else SERVER_WAIT_S
        with urllib.request.urlopen(url, timeout=wait) as answer:
            answer.read(64)
    except urllib.error.HTTPError as err:
        if err.code < 500 and err.code != 404:  # it answers, if not to this: a server
            return
        raise ConfigError(
            FIELD, f"the tracking server at {uri} answers {err.code}", ALLOWED
        ) from None
    except (urllib.error.URLError, OSError, ValueError, TypeError) as err:
        reason = getattr(err, "reason", err)
        problem = f"no tracking server answers at {uri} ({reason})"
        raise ConfigError(
            FIELD, problem, "a running MLflow server, or a sqlite:/// store"
        ) from None


def _check_experiment(uri: str, name: str) -> None:
    """MLflow keeps a deleted experiment's name: a run cannot open an experiment of it."""
    from mlflow.tracking import MlflowClient

    # A store another tfdl process may be creating right now (it made the lock file
    # first): its tables are read once that process is done with them.
    db = sqlite_path(uri)
    busy = db is not None and db.with_name(db.name + ".lock").exists()
    with shared(uri) if busy else contextlib.nullcontext():
        found = MlflowClient(uri).get_experiment_by_name(name)
    if found is not None and found.lifecycle_stage == "deleted":
        raise ConfigError(
            "tracking.experiment",
            f"{name!r} is the name of a deleted experiment (id {found.experiment_id})",
            f"another name, or restore it: mlflow experiments restore -x {found.experiment_id}",
        )


def _check_sqlite(db: Path) -> None:
    field, allowed = FIELD, ALLOWED
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
