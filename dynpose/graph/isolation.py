"""Run one task in a child process: its own wall time and peak memory, and a native crash is a
failure of that task, not of the shard."""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import time

from dynpose.storage.lake import StorageUnavailable, storage_unavailable

# The storage settings a task reads (S3 endpoint, keys, retries): the forkserver keeps the
# environment it started with, so each task is given the caller's current values.
_ENV_PREFIXES = ("DYNPOSE_", "AWS_")


def _storage_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}


def _child(conn, fn, args, kwargs, env=None):
    t0 = time.perf_counter()
    if env is not None:
        for k in [k for k in os.environ if k.startswith(_ENV_PREFIXES) and k not in env]:
            del os.environ[k]
        os.environ.update(env)
    try:
        out = ("ok", fn(*args, **kwargs))
    except Exception as exc:  # reported to the parent as a failure of this one task
        down = storage_unavailable(exc)
        # Storage that did not answer is not this task's failure: the parent raises it, so the
        # product's shard fails (and is computed again) instead of recording the video as failed.
        out = ("storage", str(down)) if down else ("error", f"{type(exc).__name__}: {exc}")
    conn.send((out, time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    conn.close()


# Children fork from a clean forkserver (no Dagster, Ray or LanceDB threads inherited), which has
# imported the heavy libraries once, so each task starts fast.
_PRELOAD = [
    "dynpose.graph.steps.stages",
    "dynpose.graph.steps.filters",
    *[f"dynpose.domain.filters.{name}" for name in ("content", "flow", "focal", "distortion", "tracking", "masking")],
    "dynpose.evaluation.baselines.colmap",
    "dynpose.evaluation.baselines.identity",
]


def _context():
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def run_measured(fn, *args, **kwargs):
    """Run ``fn`` in a child process to measure its own peak memory (MiB) and wall time.

    Returns (status, value_or_message, seconds, peak_mib). The peak is the child's maximum
    resident set, which includes the libraries the forkserver preloaded. A crash of the child
    (native code fault, killed for memory) is a failure of that task, not of the caller. Storage
    that did not answer (``StorageUnavailable``) is raised here, in the caller: it is no task's fault.
    """
    ctx = _context()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args, kwargs, _storage_env()))
    t0 = time.perf_counter()
    proc.start()
    child.close()
    try:
        (status, value), seconds, peak = parent.recv()
        proc.join()
    except EOFError:
        proc.join()
        status, value, seconds, peak = (
            "error",
            f"worker died (exit code {proc.exitcode})",
            time.perf_counter() - t0,
            float("nan"),
        )
    if status == "storage":
        raise StorageUnavailable(value)
    return status, value, seconds, peak
