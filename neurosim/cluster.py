"""A Dask client for a sweep: a scheduler's address (any cluster), or a local cluster.

Without an address, :func:`open_client` starts a ``LocalCluster`` on the loopback interface
with one single-threaded worker process per available core (``workers`` overrides), each
started with :data:`THREAD_LIMITS` in its environment so that a trial's Numba and BLAS
threads do not oversubscribe the cores (one trial per core; results do not depend on the
thread count). The cluster stops when the context ends. Dask's own log messages below
CRITICAL are silenced (a worker restarted after it died, a heartbeat racing the shutdown):
what became of every trial is in the sweep's manifest. Workers started by other means
(``dask worker``, ``dask-jobqueue``) need the same variables: see ``docs/scaling.md``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from distributed import Client, LocalCluster, WorkerPlugin
from distributed.comm import connect as comm_connect
from distributed.security import Security

from neurosim.cores import available_cores
from neurosim.errors import NeurosimError

THREAD_LIMITS = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                 "OPENBLAS_NUM_THREADS": "1"}
CONNECT_TIMEOUT_S = 30


class IgnoreInterrupt(WorkerPlugin):
    """Local workers ignore Ctrl-C (sent to the whole terminal's process group): the command
    stops them when it is interrupted, rather than each printing a traceback."""

    def setup(self, worker) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def open_client(scheduler: str | None = None, workers: int | None = None) -> Iterator:
    """A ``distributed.Client`` connected to ``scheduler``, or (no scheduler) to a new
    local cluster of ``workers`` processes (default: one per core), each with
    :data:`THREAD_LIMITS` (:func:`inherited_environment`)."""
    if scheduler is not None:
        with connect(scheduler) as client:
            yield client
        return
    # No dashboard (it needs bokeh); the scheduler's HTTP endpoints on a free loopback port.
    with inherited_environment(THREAD_LIMITS):
        cluster = LocalCluster(n_workers=workers or available_cores(), threads_per_worker=1,
                               processes=True, dashboard_address=None,
                               scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                               env=THREAD_LIMITS, silence_logs=logging.CRITICAL)
    with cluster, Client(cluster) as client:
        client.register_plugin(IgnoreInterrupt())
        yield client


def connect(scheduler: str) -> Client:
    """A client of the scheduler at ``scheduler``, or one line saying why there is none
    within :data:`CONNECT_TIMEOUT_S`: nothing listening, or something that is not a Dask
    scheduler (an HTTP server, e.g. the dashboard's port, answers garbage that Dask reads
    as a frame length of exbibytes; a silent one leaves Dask's handshake waiting forever,
    as Dask's own timeout covers only the TCP connection). :func:`_handshake` checks the
    address first, within the time limit; the client connects once it has answered."""
    try:
        _handshake(scheduler)
        return Client(scheduler, timeout=CONNECT_TIMEOUT_S)
    except Exception as error:  # noqa: BLE001 (re-raised as one line)
        why = " ".join(f"{type(error).__name__}: {error}".split())
        if isinstance(error, asyncio.TimeoutError):
            why = f"no Dask scheduler answered within {CONNECT_TIMEOUT_S} s"
        raise NeurosimError(f"cannot connect to the Dask scheduler at {scheduler} ({why}); "
                            "is it a Dask scheduler's address (tcp://host:8786), not its "
                            "dashboard's?") from None


def _handshake(scheduler: str) -> None:
    """Dask's connection and handshake with ``scheduler`` (the client's default security),
    closed at once; raises why it failed, ``asyncio.TimeoutError`` past
    :data:`CONNECT_TIMEOUT_S`. It runs in an event loop of its own, on a thread of its own
    so that a caller with a running loop (a notebook) can wait for it; the time limit ends
    the thread, so none is left behind (an abandoned connection attempt once deadlocked
    Dask's shared event-loop lock when the garbage collector closed another client)."""
    outcome: dict = {}

    async def attempt() -> None:
        comm = await asyncio.wait_for(
            comm_connect(scheduler, timeout=CONNECT_TIMEOUT_S,
                         **Security().get_connection_args("client")),
            CONNECT_TIMEOUT_S)
        await comm.close()

    def run() -> None:
        try:
            asyncio.run(attempt())
        except BaseException as error:  # noqa: BLE001 (raised in the caller's thread)
            outcome["error"] = error

    thread = threading.Thread(target=run, name="neurosim-handshake")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]


@contextmanager
def inherited_environment(variables: dict[str, str]) -> Iterator[None]:
    """``variables`` in this process's environment while the context lasts, for the worker
    processes started meanwhile to inherit them from their first instruction. Dask's
    ``env=`` alone comes too late: a spawned worker first re-imports the parent's main
    module (the ``neurosim`` command imports Numba and NumPy), and Numba and OpenBLAS read
    their thread counts when they are imported. The context covers only the workers'
    start (:func:`open_client`): a Numba whose threads are running raises when it compiles
    while ``NUMBA_NUM_THREADS`` differs from their count, so a driver that kept the limits
    while it computed failed at its next compilation (the tests' sweep fixture did; this
    process's own libraries keep their thread counts). A worker restarted after a death
    gets them from ``env=`` only: the same results, on its libraries' default threads."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
