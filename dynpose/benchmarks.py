"""Benchmarks: every speed figure of the project comes from here, printed as a table and written
as a markdown report (never from timed unit tests).

``noop_rerun``: ingest N single-video shards, materialize them, then time a rerun that must
compute nothing (the ledger answers every shard).
"""

from __future__ import annotations

import datetime as dt
import platform
import resource
import time
from pathlib import Path

import av
import numpy as np


def write_noise_clip(path: Path, seed: int, frames: int = 12, size: int = 64, fps: int = 12) -> None:
    """A tiny distinct mp4 (random texture drifting), so every file hashes to a new video."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (size * 2, size * 2, 3), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[i : i + size, i : i + size]), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def markdown_table(rows: list[dict]) -> str:
    cols = list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def machine_line() -> str:
    import os

    return f"{platform.machine()} {os.cpu_count()} CPU(s), Python {platform.python_version()}, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def noop_rerun(workdir: Path, shards: int = 100, lake_url: str | None = None, log=print) -> list[dict]:
    from .ingest import ingest
    from .lake import Lake
    from .orchestrate import materialize
    from .settings import IngestSettings

    src = workdir / "videos"
    src.mkdir(parents=True, exist_ok=True)
    for i in range(shards):
        clip = src / f"noise_{i:04d}.mp4"
        if not clip.exists():
            write_noise_clip(clip, seed=i)
    lake_url = lake_url or str(workdir / "lake")
    report = ingest(str(src), Lake(lake_url), IngestSettings(shard_size=1))
    log(report.summary())
    t0 = time.perf_counter()
    first = materialize(lake_url, progress=True)
    t_first = time.perf_counter() - t0
    rows = []
    for attempt in range(3):
        t0 = time.perf_counter()
        again = materialize(lake_url, progress=False)
        wall = time.perf_counter() - t0
        computed = sum(o.action == "computed" for o in again)
        rows.append({
            "run": f"no-op rerun {attempt + 1}", "shards": shards, "product shards": len(again),
            "computed": computed, "wall s": wall, "ms per shard": 1000 * wall / shards,
        })
    rows.insert(0, {
        "run": "first materialization", "shards": shards, "product shards": len(first),
        "computed": sum(o.action == "computed" for o in first), "wall s": t_first, "ms per shard": 1000 * t_first / shards,
    })
    return rows
