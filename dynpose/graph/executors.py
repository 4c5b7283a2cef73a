"""Executors for the per-video work inside a shard: in-process (default) or Ray.

Per-video functions must be top-level (picklable) and must not raise for a bad video: they return
a row with a failure status instead. Results come back in input order either way, so products are
identical whichever executor ran them.
"""

from __future__ import annotations

import os
from typing import Callable, Iterable, Protocol


class Executor(Protocol):
    name: str

    def map(self, fn: Callable, items: Iterable, progress: Callable[[int, int], None] | None = None) -> list: ...


class InProcessExecutor:
    """Videos one after another, or ``workers`` at a time on threads.

    Threads suffice because every heavy per-video stage runs in its own child process
    (``dynpose.graph.isolation.run_measured``): a thread only waits for its child.
    """

    name = "in_process"

    def __init__(self, workers: int = 1):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers

    def map(self, fn, items, progress=None):
        items = list(items)
        if self.workers == 1 or len(items) < 2:
            out = []
            for i, item in enumerate(items):
                out.append(fn(item))
                if progress:
                    progress(i + 1, len(items))
            return out
        from concurrent.futures import ThreadPoolExecutor, as_completed

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
            out: list = [None] * len(items)
            for done, fut in enumerate(as_completed(futures), 1):
                out[futures[fut]] = fut.result()
                if progress:
                    progress(done, len(items))
        return out


def _verbose() -> bool:
    # As dynpose.logs.is_verbose (the command line sets DYNPOSE_VERBOSE=1 for --verbose); read here
    # directly because the graph layer does not import the command line's modules.
    return os.environ.get("DYNPOSE_VERBOSE", "").strip().lower() in ("1", "true", "yes", "on")


def _ray_logs_to_fd2() -> None:
    import logging
    import sys

    if sys.__stderr__ is None:
        return
    for handler in logging.getLogger("ray").handlers:
        if type(handler).__name__ == "PlainRayHandler" or type(handler) is logging.StreamHandler:
            handler.setStream(sys.__stderr__)  # the stream on fd 2 itself, not the terminal sys.stderr keeps


def _apply(fn, item):
    return fn(item)


class RayExecutor:
    """Ray tasks, one per video. Without an address, starts a local Ray bound to 127.0.0.1."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, cpus_per_task: float = 1.0):
        self.address = address
        self.num_cpus = num_cpus
        self.cpus_per_task = cpus_per_task

    def _ensure_started(self):
        import ray

        if ray.is_initialized():
            return ray
        # Worker logs stay in Ray's session folder and the driver's own log lines go where native
        # logs go (file descriptor 2: the run's log file under the CLI), unless --verbose /
        # DYNPOSE_VERBOSE=1 asks for both on the terminal.
        quiet = dict(log_to_driver=_verbose())
        if not _verbose():
            _ray_logs_to_fd2()
        if self.address:
            ray.init(address=self.address, ignore_reinit_error=True, **quiet)
        else:
            # Keep a local Ray on loopback, without the dashboard or usage reporting.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            ray.init(
                num_cpus=self.num_cpus,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                ignore_reinit_error=True,
                **quiet,
            )
        return ray

    def map(self, fn, items, progress=None):
        ray = self._ensure_started()
        items = list(items)
        remote = ray.remote(num_cpus=self.cpus_per_task, max_retries=2)(_apply)
        fn_ref = ray.put(fn)  # functools.partial and friends travel as data
        refs = [remote.remote(fn_ref, item) for item in items]
        pending, done = list(refs), 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            done += len(ready)
            if progress:
                progress(done, len(items))
        return ray.get(refs)

    def shutdown(self):
        import ray

        if ray.is_initialized():
            ray.shutdown()


def make_executor(
    kind: str = "in_process", address: str | None = None, num_cpus: int | None = None, workers: int = 1
) -> Executor:
    """``workers``: videos at a time for the in-process executor (Ray schedules by ``num_cpus``)."""
    if kind in ("in_process", "local"):
        return InProcessExecutor(workers)
    if kind == "ray":
        return RayExecutor(address=address, num_cpus=num_cpus)
    raise ValueError(f"unknown executor '{kind}': use 'in_process' or 'ray'")
