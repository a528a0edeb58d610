"""Training on several devices or machines (`train.distribution`) and in float16
(`train.mixed_precision`), with tf.distribute and Keras' dtype policies.

    none          one device, TensorFlow's placement
    mirrored      tf.distribute.MirroredStrategy: a replica on every GPU, or without GPUs on
                  every logical CPU device; each global batch of train.batch_size is split
                  between the replicas and their gradients are summed every step (Keras
                  averages the loss per replica: an epoch's last, partial batch split
                  unevenly weighs its rows slightly unequally, unlike on one device)
    multi_worker  tf.distribute.MultiWorkerMirroredStrategy: one process per worker, the
                  cluster given as `--workers host:port,... --worker-index i` (TF_CONFIG);
                  worker 0 is the chief, the only one that records the run

The model is built and compiled inside the strategy's scope; Keras distributes the tf.data
splits itself. Under multi_worker every worker runs the same steps in the same order (fit,
its callbacks, evaluation): each collective op waits for all workers, so a step one worker
skips or takes at another time would hang the others.

The checks of the cluster (`cluster`) import nothing heavy: the CLI runs them before
TensorFlow loads.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import re
import socket
import sys
import threading
from dataclasses import dataclass

from tfdl.errors import ConfigError

HOST_PORT = "workers host:port,host:port (e.g. 127.0.0.1:20001,127.0.0.1:20002)"
_ADDRESS = re.compile(
    r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?):(?P<port>[0-9]+)$"
)
# A collective op waits at most this long for the other workers (a worker still starting,
# the chief storing an epoch in MLflow); past it the op fails instead of hanging.
COLLECTIVE_TIMEOUT_S = 600.0
# Peers are probed this often; so many failed probes in a row and a peer is lost.
PROBE_EVERY_S, PROBES_LOST = 1.0, 3


@dataclass(frozen=True)
class Cluster:
    """The workers of a multi_worker training, as host:port, and which one this process is."""

    workers: tuple[str, ...]
    index: int

    @property
    def is_chief(self) -> bool:
        return self.index == 0  # MultiWorkerMirroredStrategy's chief: worker 0

    @property
    def peers(self) -> list[tuple[int, str]]:
        return [(i, w) for i, w in enumerate(self.workers) if i != self.index]

    def tf_config(self) -> str:
        """TF_CONFIG as TensorFlow's cluster resolver reads it."""
        task = {"type": "worker", "index": self.index}
        return json.dumps({"cluster": {"worker": list(self.workers)}, "task": task})


def parse_workers(workers) -> tuple[str, ...]:
    """`host:port,host:port` (or a list of them) as a tuple; a ConfigError naming the
    setting `workers` for anything else."""
    items = workers.split(",") if isinstance(workers, str) else list(workers)
    items = [str(w).strip() for w in items]
    if not any(items):
        raise ConfigError("workers", "no workers given", HOST_PORT, ("workers",))
    for w in items:
        found = _ADDRESS.match(w)
        if found is None:
            raise ConfigError("workers", f"{w!r} is not host:port", HOST_PORT, ("workers",))
        if not 1 <= int(found["port"]) <= 65535:
            raise ConfigError("workers", f"{w}: port {found['port']} is out of range", "1 to 65535")
        if items.count(w) > 1:
            raise ConfigError("workers", f"{w} is given twice", "one host:port per worker")
    return tuple(items)


CLUSTER = "workers host:port,... and worker_index i"  # what a multi_worker training needs


def no_cluster() -> ConfigError:
    return ConfigError(
        "workers",
        "train.distribution multi_worker needs the cluster: every worker's host:port",
        CLUSTER,
        ("workers", "worker_index"),
    )


def cluster(distribution: str, workers=None, worker_index: int | None = None) -> Cluster | None:
    """The cluster of a training with `train.distribution` = `distribution`, checked: a
    list of host:port, an index among them, and both only for multi_worker (which needs
    them). None when the training runs in this process alone."""
    if workers is None and worker_index is None:
        if distribution == "multi_worker":
            raise no_cluster()
        return None
    if workers is None:
        raise ConfigError(
            "workers",
            "missing, though a worker index is given",
            CLUSTER,
            ("workers", "worker_index"),
        )
    parsed = parse_workers(workers)
    if worker_index is None:
        raise ConfigError(
            "worker_index",
            f"missing: which of the {len(parsed)} workers this process is",
            f"0 to {len(parsed) - 1}",
        )
    if isinstance(worker_index, bool) or not 0 <= worker_index < len(parsed):
        raise ConfigError(
            "worker_index",
            f"{worker_index} is out of range for {len(parsed)} workers",
            f"0 to {len(parsed) - 1}",
        )
    if distribution != "multi_worker":
        raise ConfigError(
            "workers",
            f"a cluster is only for train.distribution multi_worker, not {distribution!r}",
            "train.distribution=multi_worker, or no workers",
        )
    return Cluster(parsed, worker_index)


def check_port(c: Cluster) -> None:
    """This worker's port is free: TensorFlow's server would fail on it after start-up."""
    address = c.workers[c.index]
    port = int(address.rsplit(":", 1)[1])
    with socket.socket() as sock:
        # As the server binds it: a port in TIME_WAIT is free, one listened on is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", port))
        except OSError as err:
            if err.errno != errno.EADDRINUSE:
                return  # e.g. a privileged port: TensorFlow's server says what is wrong
            raise ConfigError(
                "workers",
                f"{address} (worker {c.index}, this process) is in use by another program",
                "a free port for every worker",
            ) from None


# ----------------------------------------------------------------------- process state

_cluster: Cluster | None = None
_strategies: dict = {}  # distribution -> its strategy, made once per process


def role() -> Cluster | None:
    """This process's place in a multi_worker cluster; None when it trains alone."""
    return _cluster


def records() -> bool:
    """Whether this process records the run: always, except a worker that is not the chief."""
    return _cluster is None or _cluster.is_chief


def start(c: Cluster) -> None:
    """Join the cluster `c`: TF_CONFIG for TensorFlow, then the strategy, which has to
    come before TensorFlow sets up its devices (it configures their collective ops) and
    waits until every worker has joined."""
    global _cluster
    n, address = len(c.workers), c.workers[c.index]
    print(f"worker {c.index} of {n} ({address}): waiting for the other workers", flush=True)
    os.environ["TF_CONFIG"] = c.tf_config()
    _cluster = c
    strategy("multi_worker")


def leave(code: int) -> None:
    """End a process of a cluster that failed or was interrupted now, its run already
    ended and its line printed: TensorFlow's own teardown would wait for the lost worker
    until its coordination service gives up on it (half a minute)."""
    if _cluster is None:
        return
    import atexit

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def strategy(distribution: str):
    """The tf.distribute strategy of `train.distribution`, made once per process; None
    for `none` (TensorFlow's default placement)."""
    if distribution == "none":
        return None
    if distribution not in _strategies:
        import tensorflow as tf

        grow_gpu_memory()
        if distribution == "mirrored":
            gpus = tf.config.list_logical_devices("GPU")
            devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
            _strategies[distribution] = tf.distribute.MirroredStrategy(devices)
        else:
            if _cluster is None:  # e.g. the Python API, without distribute.start
                raise no_cluster()
            options = tf.distribute.experimental.CommunicationOptions(
                timeout_seconds=COLLECTIVE_TIMEOUT_S
            )
            _strategies[distribution] = tf.distribute.MultiWorkerMirroredStrategy(
                communication_options=options
            )
            _mean_scalars_across_workers()
    return _strategies[distribution]


# Two mends of Keras 3.15's TensorFlow trainer under a strategy (tests/test_distribute.py
# fails without them).


def mend(model) -> None:
    """Before its first fit, Keras builds a model under a strategy from a batch it takes
    off the training iterator (and under several workers it reduces that whole (x, y)
    batch across them, which MultiWorkerMirroredStrategy refuses): the batch is lost to
    training, each epoch's pass over the repeated stream shifted by one. The dataset's
    element spec gives the same shapes and takes nothing."""
    model._maybe_symbolic_build = functools.partial(_build_from_spec, model)


def _build_from_spec(model, iterator=None, data_batch=None):
    if iterator is not None:
        data_batch = iterator.data_adapter.get_tf_dataset().element_spec
    with model.distribute_strategy.scope():
        model._symbolic_build(data_batch=data_batch)


def _mean_scalars_across_workers() -> None:
    """Keras averages each step's logged numbers across workers along axis 0, which a
    scalar (the loss, a metric) does not have: scalars are averaged whole. Process-wide:
    only a process that joined a cluster makes a MultiWorkerMirroredStrategy."""
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    keras_reduce = trainer.reduce_per_replica
    if getattr(keras_reduce, "mended", False):
        return

    def reduce_per_replica(values, strategy, reduction="auto"):
        if reduction not in ("auto", "mean") or not trainer._collective_all_reduce_multi_worker(
            strategy
        ):
            return keras_reduce(values, strategy, reduction)

        def mean(v):
            scalar = all(t.shape.rank == 0 for t in strategy.experimental_local_results(v))
            return strategy.reduce("MEAN", v, axis=None if scalar else 0)

        return tree.map_structure(mean, values)

    reduce_per_replica.mended = True
    trainer.reduce_per_replica = reduce_per_replica


def grow_gpu_memory() -> None:
    """GPUs take memory as needed rather than all of it (several processes share one)."""
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        with contextlib.suppress(RuntimeError):  # devices already set up: left as they are
            tf.config.experimental.set_memory_growth(gpu, True)


def replicas(distribution: str) -> int:
    """How many replicas train each step: every device of every worker."""
    s = strategy(distribution)
    return 1 if s is None else int(s.num_replicas_in_sync)


@contextlib.contextmanager
def scope(distribution: str):
    """Inside the strategy's scope: variables made here are mirrored across replicas."""
    s = strategy(distribution)
    with s.scope() if s is not None else contextlib.nullcontext():
        yield


@contextlib.contextmanager
def precision(mixed: bool):
    """Keras' mixed_float16 policy while the block builds a model (layers compute in
    float16, keep float32 weights; compiling wraps the optimizer in Keras'
    LossScaleOptimizer), then the policy as it was: it is process-wide."""
    import keras

    before = keras.mixed_precision.global_policy()
    if mixed:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


# ------------------------------------------------------------- the steps all workers share


def chief_ready(key: str) -> None:
    """The chief tells the other workers that `key` is done (e.g. its backup is restored)."""
    if _cluster is not None and _cluster.is_chief and len(_cluster.workers) > 1:
        from tensorflow.python.eager import context

        context.context().set_config_key_value(f"tfdl/{key}", "1")


def wait_for_chief(key: str, timeout_s: float = COLLECTIVE_TIMEOUT_S) -> None:
    """Wait until the chief said `key` is done (through TensorFlow's coordination service)."""
    from tensorflow.python.eager import context

    context.context().get_config_key_value(f"tfdl/{key}", int(timeout_s * 1000))


class Watchdog:
    """Probes the other workers' ports while the workers train in step. A worker killed
    outright leaves the others waiting in a collective op (until its timeout); once a peer
    stops answering PROBES_LOST times in a row, its collective ops are aborted here, so the
    training raises at once (UnavailableError, naming the worker) and its run ends FAILED.

    A peer counts only once it has answered: workers start at different times.
    """

    def __init__(self, c: Cluster, every_s: float = PROBE_EVERY_S, lost_after: int = PROBES_LOST):
        self.cluster, self.every_s, self.lost_after = c, every_s, lost_after
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tfdl-watchdog", daemon=True)
        self.lost: str | None = None

    def __enter__(self):
        if self.cluster.peers:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self):
        seen, failures = set(), dict.fromkeys(range(len(self.cluster.workers)), 0)
        while not self._stop.wait(self.every_s):
            for i, address in self.cluster.peers:
                if _answers(address, timeout=self.every_s):
                    seen.add(i)
                    failures[i] = 0
                    continue
                failures[i] += 1
                if i in seen and failures[i] >= self.lost_after and not self._stop.is_set():
                    self._abort(i, address)
                    return

    def _abort(self, i: int, address: str) -> None:
        from tensorflow.python.eager import context
        from tensorflow.python.framework import errors

        chief = "the chief, " if i == 0 else ""
        self.lost = f"worker {i} ({chief}{address}) stopped answering (its port is closed)"
        context.context().abort_collective_ops(errors.UNAVAILABLE, self.lost)


def _answers(address: str, timeout: float) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except OSError:
        return False


class WorkerLost(RuntimeError):
    """A worker of the cluster stopped: the collective ops of the others fail."""


@contextlib.contextmanager
def watching():
    """The block's collective ops, the other workers watched (Watchdog); their failure
    for a lost worker is raised as WorkerLost, naming it."""
    if _cluster is None:
        yield
        return
    with Watchdog(_cluster) as dog:
        try:
            yield
        except Exception as err:
            lost = _lost(err, dog.lost)
            if lost is None:
                raise
            raise lost from err


def _lost(err: Exception, seen: str | None) -> WorkerLost | None:
    """`err` as the loss of a worker, if a collective op failed for one (None if not)."""
    import tensorflow as tf

    failures = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError)
    if not isinstance(err, (*failures, tf.errors.AbortedError, tf.errors.CancelledError)):
        return None
    if seen is not None:  # the watchdog found it
        return WorkerLost(seen)
    text, who = str(err), "a worker"
    tasks = [int(t) for t in re.findall(r"/job:worker/replica:\d+/task:(\d+)", text)]
    others = [i for i in tasks if i != _cluster.index and i < len(_cluster.workers)]
    if others:  # the peer TensorFlow's error names
        i = others[0]
        who = f"worker {i} ({'the chief, ' if i == 0 else ''}{_cluster.workers[i]})"
    if isinstance(err, tf.errors.DeadlineExceededError):
        return WorkerLost(f"{who} kept a collective op waiting over {COLLECTIVE_TIMEOUT_S:.0f} s")
    why = re.search(r"Collective ops is aborted by: ([^\n]+)", text)
    detail = f" ({why[1].strip()})" if why else ""
    return WorkerLost(f"{who} stopped answering{detail}")
