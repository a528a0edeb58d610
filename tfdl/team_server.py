"""A team's MLflow tracking server on PostgreSQL: what `make server` runs.

`mlflow server` keeps the runs in a PostgreSQL database and proxies the artifacts, so
trainers on other machines set `MLFLOW_TRACKING_URI=http://HOST:PORT` and send
everything over HTTP: parameters, metrics, files and models; the files land in a folder
of the project (`mlruns/team-artifacts/`). The database is one given as
`DB=postgresql://...`, or by default a PostgreSQL cluster of the project's own in
`mlruns/postgres/`: initialised once, started with the server on 127.0.0.1 alone, and
stopped with it.

Every setting is checked before anything starts or is written: bad input is one line,
`error: <setting>: <problem>; allowed: ...`, exit code 2. Ctrl-C (or SIGTERM) stops the
server, then the cluster it started.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from tfdl.errors import ConfigError
from tfdl.store import LIBPQ, STORE, check_database, check_driver, masked

CLUSTER = STORE / "postgres"
ARTIFACTS = STORE / "team-artifacts"
DB_ENV = "TFDL_SERVER_DB"  # how make passes DB: a password stays off the command line
LOOPBACK = "127.0.0.1"
USER = DATABASE = "mlflow"  # the cluster's one role, and MLflow's database in it
OS_USER = "postgres"  # whom PostgreSQL runs as when started by root, which it refuses
# Each uvicorn worker of the server holds pools of up to 15 connections for each of its
# stores (runs, registry, jobs): PostgreSQL's default 100 would run out under load.
MAX_CONNECTIONS = 256
PG_START_TIMEOUT = 60
SERVER_START_TIMEOUT = 180  # MLflow 3's server takes 20-30 s to start on 2 busy cores
PG_STOP_TIMEOUT = 30
PORTS = "1 to 65535"
ALL = ("0.0.0.0", "::")  # every interface
# The Host headers MLflow's server answers by default (its guard against DNS rebinding):
# loopback and the private networks. --allowed-hosts replaces them, so they go with it.
MLFLOW_HOSTS = [
    *("localhost", "127.0.0.1", "[::1]", "0.0.0.0"),
    *("localhost:*", "127.0.0.1:*", "[[]::1]:*", "0.0.0.0:*"),  # fnmatch: [[] is a [
    *("192.168.*", "10.*", *(f"172.{n}.*" for n in range(16, 32)), "fc00:*", "fd00:*"),
]
PG_URI = "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
# The driver of the server extra, named in every URI the server gets: SQLAlchemy's default
# for postgresql:// depends on its version.
SCHEME = "postgresql+psycopg"


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise ConfigError("make server", message, "see python -m tfdl.team_server --help")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m tfdl.team_server", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", default="5000", help="the server's port (make: PORT)")
    p.add_argument("--host", default="0.0.0.0", help="the interface it listens on (make: LISTEN)")
    p.add_argument(
        "--db",
        default=os.environ.get(DB_ENV) or None,
        help=f"a postgresql:// URI (make: DB; or ${DB_ENV}); default: the project's cluster",
    )
    p.add_argument(
        "--pg-port", help="the cluster's port on 127.0.0.1 (make: PG_PORT); default: free"
    )
    p.add_argument("--cluster", type=Path, default=CLUSTER, help="the cluster's folder")
    p.add_argument("--artifacts", type=Path, default=ARTIFACTS, help="where artifacts are kept")
    p.add_argument("--workers", type=int, help="the server's worker processes (MLflow's default)")
    p.add_argument("--allowed-hosts", help="more names it answers to (make: ALLOWED_HOSTS)")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        plan = _plan(_parser().parse_args(argv))
    except ConfigError as err:
        print(err.line(), file=sys.stderr)
        return 2
    # Ctrl-C and SIGTERM stop it, also where it was started with SIGINT ignored (in the
    # background of a script), which Python would keep.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)
    try:
        return _serve(plan)
    except KeyboardInterrupt:
        print("tracking server stopped", flush=True)
        return 130
    except RuntimeError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1


# ------------------------------------------------------------------ the checks, up front


class _Plan(argparse.Namespace):
    """The checked settings: port, host, db (None: the cluster), pg_port, cluster, bindir,
    as_user (whom the cluster runs as), artifacts, workers, allowed_hosts."""


def _plan(args) -> _Plan:
    """Every setting checked, nothing started or written."""
    plan = _Plan(**vars(args))
    _check_host(args.host)
    plan.port = _port(args.port, "PORT", args.host)
    if args.pg_port is not None:
        if args.db:
            raise ConfigError("PG_PORT", "is for the project's cluster, not DB", "PG_PORT or DB")
        plan.pg_port = _port(args.pg_port, "PG_PORT", LOOPBACK)
    if args.workers is not None and args.workers < 1:
        raise ConfigError("workers", f"{args.workers} is out of range", "at least 1")
    if args.db:
        scheme = urlparse(args.db).scheme.lower()
        if scheme.partition("+")[0] != "postgresql":
            raise ConfigError("DB", f"{masked(args.db)} is no PostgreSQL URI", PG_URI)
        if scheme == "postgresql":
            plan.db = SCHEME + args.db[len(scheme) :]
        _check_database(plan.db)
    else:
        check_driver(f"{SCHEME}://", "DB")  # the cluster is reached with it too
        plan.bindir = postgres_bindir()
        if plan.bindir is None:
            problem = "no PostgreSQL is installed here to run the project's cluster"
            raise ConfigError("DB", problem, f"apt-get install postgresql, or DB={PG_URI}")
        plan.pg_port = plan.pg_port or _free()
        plan.cluster = args.cluster.resolve()
        plan.as_user = _cluster_user()
        _check_cluster(plan.cluster)
    plan.artifacts = args.artifacts.resolve()
    _check_creatable(plan.artifacts)
    return plan


def _check_host(host: str) -> None:
    with socket.socket(_family(host)) as sock:
        try:
            sock.bind((host, 0))
        except (OSError, UnicodeError):
            problem = f"{host!r} is no address of this machine"
            raise ConfigError("LISTEN", problem, f"0.0.0.0 (all) or {LOOPBACK}") from None


def _port(text: str, field: str, host: str) -> int:
    """A port the server can listen on at `host`, from its text."""
    try:
        port = int(text)
    except ValueError:
        raise ConfigError(field, f"{text!r} is not a port", PORTS) from None
    if not 0 < port < 65536:
        raise ConfigError(field, f"{port} is out of range", PORTS)
    with socket.socket(_family(host)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            sock.bind((host, port))
        except PermissionError:
            raise ConfigError(field, f"{port} needs root", "1024 to 65535") from None
        except OSError:
            raise ConfigError(field, f"{host}:{port} is in use", "a free port") from None
    return port


def _free() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _check_database(uri: str) -> None:
    """The driver is installed and the database answers, as for a tracking URI."""
    module = check_driver(uri, "DB")
    if module in LIBPQ:
        check_database(uri, module, "DB", f"a running PostgreSQL server at {PG_URI}")


def postgres_bindir() -> Path | None:
    """The folder of PostgreSQL's server programs (initdb, postgres): `pg_config
    --bindir`, Debian's /usr/lib/postgresql/<newest>/bin, or initdb's on PATH."""
    candidates = []
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10
            )
            candidates.append(Path(done.stdout.strip()))
    debian = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(debian, key=lambda p: _version(p.parent.name), reverse=True)
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).parent)
    return next(
        (c for c in candidates if (c / "initdb").is_file() and (c / "postgres").is_file()), None
    )


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", name))


def _cluster_user():
    """Whom PostgreSQL runs as: this user, or the postgres user when this is root."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        return pwd.getpwnam(OS_USER)
    except KeyError:
        problem = f"PostgreSQL does not run as root, and there is no {OS_USER} user to run it as"
        allowed = f"a {OS_USER} user (Debian's postgresql package makes one), or DB={PG_URI}"
        raise ConfigError("DB", problem, allowed) from None


def _check_cluster(cluster: Path) -> None:
    """The cluster's folder can be made and used: as root, the postgres user must be
    able to enter every folder above it."""
    data = cluster / "data"
    if data.exists() and not (data / "PG_VERSION").is_file():
        raise ConfigError(str(cluster), f"{data} is no PostgreSQL cluster", "a new folder")
    if (data / "PG_VERSION").is_file() and not (cluster / "password").is_file():
        problem = f"the cluster's password file {cluster / 'password'} is missing"
        raise ConfigError(str(cluster), problem, "the cluster with its password, or a new folder")
    _check_creatable(cluster)
    if os.geteuid() == 0:
        user = _cluster_user()
        groups = {user.pw_gid, *os.getgrouplist(user.pw_name, user.pw_gid)}
        for folder in reversed(cluster.parents):
            if folder.exists() and not _can_enter(folder, user.pw_uid, groups):
                problem = f"the {OS_USER} user cannot enter {folder}, above the cluster"
                raise ConfigError(str(cluster), problem, "a folder every user can reach")


def _can_enter(folder: Path, uid: int, groups: set[int]) -> bool:
    mode = folder.stat()
    if mode.st_uid == uid:
        return bool(mode.st_mode & stat.S_IXUSR)
    if mode.st_gid in groups:
        return bool(mode.st_mode & stat.S_IXGRP)
    return bool(mode.st_mode & stat.S_IXOTH)


def _check_creatable(folder: Path) -> None:
    if folder.exists():
        if not folder.is_dir():
            raise ConfigError(str(folder), "is not a folder", "a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(str(folder), "is not writable", "a writable folder")
        return
    above = next(p for p in folder.parents if p.exists())
    if not above.is_dir() or not os.access(above, os.W_OK | os.X_OK):
        raise ConfigError(str(folder), f"cannot be made in {above}", "a writable folder")


# ------------------------------------------------------------------------ the processes


def _serve(plan: _Plan) -> int:
    """The cluster (unless DB was given) and the server, until the server ends or Ctrl-C."""
    from tfdl.serving import PR_SET_CHILD_SUBREAPER, _prctl
    from tfdl.serving import _stop as stop_group

    # uvicorn outlives MLflow's command on SIGTERM: as its subreaper, this process sees it exit.
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    with contextlib.ExitStack() as stack:
        if plan.db:
            uri, where = plan.db, "given as DB"
        else:
            cluster = Cluster(plan.cluster, plan.bindir, plan.pg_port, plan.as_user)
            stack.callback(cluster.stop)
            uri, where = cluster.start(), f"the project's cluster in {_shown(plan.cluster)}"
        print(f"backend store: {masked(uri)} ({where})", flush=True)
        plan.artifacts.mkdir(parents=True, exist_ok=True)
        address = _address(plan.host)
        server = _start_server(plan, uri, _allowed_hosts(plan, address))
        stack.callback(stop_group, server)
        _wait_for_server(server, f"http://{_local(plan.host)}:{plan.port}/health")
        url = f"http://{address}:{plan.port}"
        print(f"MLflow tracking server on {url}", flush=True)
        if plan.host in ALL:
            print(f"  on this machine: http://{_local(plan.host)}:{plan.port}", flush=True)
        print(f"  trainers: export MLFLOW_TRACKING_URI={url}", flush=True)
        print(f"  artifacts: {_shown(plan.artifacts)}, sent and fetched through it", flush=True)
        print("Ctrl-C stops it", flush=True)
        code = server.wait()
        raise RuntimeError(f"the tracking server exited with {code} (its output is above)")


def _start_server(plan: _Plan, uri: str, allowed_hosts: str | None) -> subprocess.Popen:
    from tfdl.serving import PR_SET_PDEATHSIG, _prctl

    bin_dir = Path(sys.executable).parent  # the venv's mlflow, and the uvicorn it runs
    command = [str(bin_dir / "mlflow"), "server", "--host", plan.host, "--port", str(plan.port)]
    command += ["--serve-artifacts", "--artifacts-destination", str(plan.artifacts)]
    if plan.workers:
        command += ["--workers", str(plan.workers)]
    if allowed_hosts:
        command += ["--allowed-hosts", allowed_hosts]
    env = {
        **os.environ,
        "MLFLOW_BACKEND_STORE_URI": uri,  # not on the command line, where ps shows it
        "PATH": os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")]),
    }
    return subprocess.Popen(
        command,
        env=env,
        start_new_session=True,  # Ctrl-C reaches this process, which stops the group
        preexec_fn=lambda: _prctl(PR_SET_PDEATHSIG, signal.SIGTERM),
    )


def _wait_for_server(server: subprocess.Popen, health: str) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the tracking server exited with {server.returncode} as it started")
        try:
            with urllib.request.urlopen(health, timeout=2) as answer:
                answer.read(64)
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise RuntimeError(f"the tracking server did not answer within {SERVER_START_TIMEOUT} s")


def _local(host: str) -> str:
    return LOOPBACK if host in ALL else f"[{host}]" if ":" in host else host


def _address(host: str) -> str:
    """Where other machines reach the server: for all interfaces, this machine's address
    on its way out (or its name)."""
    if host not in ALL:
        return _local(host)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))  # UDP: picks a route, sends nothing
            return sock.getsockname()[0]
        except OSError:
            return socket.gethostname()


def _allowed_hosts(plan: _Plan, address: str) -> str | None:
    """The Host headers the server answers beyond MLflow's defaults: this machine's
    address and name, where it listens on them, and ALLOWED_HOSTS."""
    extra = [h.strip() for h in (plan.allowed_hosts or "").split(",") if h.strip()]
    if plan.host in ALL:
        extra += [h for name in (address, socket.gethostname()) for h in (name, f"{name}:*")]
    elif plan.host not in ("127.0.0.1", "localhost", "::1"):
        extra += [plan.host, f"{_local(plan.host)}:*"]
    return ",".join(dict.fromkeys([*MLFLOW_HOSTS, *extra])) if extra else None


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


class Cluster:
    """A PostgreSQL cluster in `folder`: `data/` (initdb's), `password` (its one role's),
    `postgres.log`. The server runs as this process's child, on 127.0.0.1 only, with no
    Unix socket, and gets SIGINT (a fast shutdown) if this process dies."""

    def __init__(self, folder: Path, bindir: Path, port: int, as_user=None):
        self.folder, self.bindir, self.port, self.as_user = folder, bindir, port, as_user
        self.data = folder / "data"
        self.log = folder / "postgres.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> str:
        """Initialise the cluster if new, start it, make MLflow's database; returns its URI."""
        if not (self.data / "PG_VERSION").is_file():
            self._init()
        password = (self.folder / "password").read_text().strip()
        from tfdl.serving import PR_SET_PDEATHSIG, _prctl

        command = [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        for setting in (
            f"listen_addresses={LOOPBACK}",
            "unix_socket_directories=",  # TCP alone: no socket file in a shared folder
            f"max_connections={MAX_CONNECTIONS}",
        ):
            command += ["-c", setting]
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.data,
                start_new_session=True,
                preexec_fn=lambda: _prctl(PR_SET_PDEATHSIG, signal.SIGINT),
                **self._user(),
            )
        self._create_database(password)
        return f"{SCHEME}://{USER}:{password}@{LOOPBACK}:{self.port}/{DATABASE}"

    def stop(self) -> None:
        """A fast shutdown (SIGINT: sessions end, data is flushed), then immediate, then kill."""
        if self.proc is None:
            return
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            for sig, wait in (
                (signal.SIGINT, PG_STOP_TIMEOUT),
                (signal.SIGQUIT, 10),
                (signal.SIGKILL, 10),
            ):
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=wait)
                    break
        finally:
            self.proc = None
            signal.signal(signal.SIGINT, previous[0])
            signal.signal(signal.SIGTERM, previous[1])

    def _user(self) -> dict:
        if self.as_user is None:
            return {}
        return {"user": self.as_user.pw_uid, "group": self.as_user.pw_gid, "extra_groups": []}

    def _own(self, path: Path) -> None:
        if self.as_user is not None:
            os.chown(path, self.as_user.pw_uid, self.as_user.pw_gid)

    def _init(self) -> None:
        """initdb into a new folder, renamed to data/ once whole: an interrupted initdb
        leaves nothing that looks like a cluster."""
        print(f"initialising a PostgreSQL cluster in {_shown(self.folder)}", flush=True)
        made = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.as_user is not None:  # whatever the umask, the postgres user gets through
            for folder in made:
                folder.chmod(folder.stat().st_mode | 0o011)
        password = secrets.token_urlsafe(24)
        _write_private(self.folder / "password", password + "\n")
        fresh, pwfile = self.folder / "data.new", self.folder / "initdb.pw"
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.mkdir(mode=0o700)
        self._own(fresh)
        _write_private(pwfile, password + "\n")
        self._own(pwfile)
        command = [str(self.bindir / "initdb"), "-D", str(fresh), "-U", USER]
        command += ["--pwfile", str(pwfile), "--auth=scram-sha-256", "-E", "UTF8", "--locale=C"]
        try:
            with open(self.log, "a") as log:
                done = subprocess.run(
                    command, stdout=log, stderr=subprocess.STDOUT, cwd=fresh, **self._user()
                )
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            shutil.rmtree(fresh, ignore_errors=True)
            raise RuntimeError(f"initdb failed ({done.returncode}): {self._tail()}")
        fresh.rename(self.data)

    def _create_database(self, password: str) -> None:
        """Wait for the cluster to take connections, then make MLflow's database if new."""
        import psycopg

        deadline, last = time.monotonic() + PG_START_TIMEOUT, ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited with {self.proc.returncode}: {self._tail()}")
            try:
                db = psycopg.connect(
                    host=LOOPBACK,
                    port=self.port,
                    user=USER,
                    password=password,
                    dbname="postgres",
                    connect_timeout=2,
                    autocommit=True,  # CREATE DATABASE runs outside a transaction
                )
                break
            except psycopg.OperationalError as err:
                last = " ".join(str(err).split())
                time.sleep(0.2)
        else:
            raise RuntimeError(f"PostgreSQL did not answer within {PG_START_TIMEOUT} s: {last}")
        try:
            with db.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{DATABASE}"')
        finally:
            db.close()

    def _tail(self) -> str:
        """The last lines PostgreSQL wrote, and where the rest is."""
        with contextlib.suppress(OSError):
            lines = [line for line in self.log.read_text().splitlines() if line.strip()]
            return f"{' / '.join(lines[-3:])} (more in {self.log})"
        return f"see {self.log}"


def _write_private(path: Path, text: str) -> None:
    """A file only its owner reads."""
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.write(text)


if __name__ == "__main__":
    sys.exit(main())
