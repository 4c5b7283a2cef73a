"""Run one task in a child process: its own wall time and peak memory, and a native crash is a
failure of that task, not of the shard."""

from __future__ import annotations

import multiprocessing as mp
import resource
import time


def _child(conn, fn, args, kwargs):
    t0 = time.perf_counter()
    try:
        out = ("ok", fn(*args, **kwargs))
    except Exception as exc:  # reported to the parent as a failure of this one task
        out = ("error", f"{type(exc).__name__}: {exc}")
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
    (native code fault, killed for memory) is a failure of that task, not of the caller.
    """
    ctx = _context()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args, kwargs))
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
    return status, value, seconds, peak
