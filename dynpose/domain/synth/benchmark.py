"""Rendering speed on one core: ``python -m dynpose.domain.synth.benchmark [--frames 24]``.

Builds each layout once (timed separately), then renders frames of a suitable clip at 854x480
with every per-frame step (ray casting, shading, shadows, motion blur, sensor), and reports
seconds per frame (wall and CPU). The process is pinned to one CPU (sched_setaffinity) and
OpenCV to one thread, so CPU time is single-core time even if a library starts threads.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402


def measure(layout: str, frames: int, width: int = 854, height: int = 480, seed: int = 11) -> dict:
    from dynpose.domain.synth.clip import ClipSpec, get_scene, render_clip

    tq = float(np.clip(max(width, 320) / 854, 0.35, 1.2))
    t0, c0 = time.perf_counter(), time.process_time()
    get_scene(layout, seed, tq)
    build_wall, build_cpu = time.perf_counter() - t0, time.process_time() - c0
    spec = ClipSpec(
        seed=seed,
        layout=layout,
        trajectory="handheld_walk",
        width=width,
        height=height,
        fps=12.0,
        seconds=frames / 12.0,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    clip = render_clip(spec)  # scene is cached: this is planning + frames + ground truth
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "layout": layout,
        "width": width,
        "height": height,
        "frames": len(clip),
        "scene_build_s": round(build_wall, 2),
        "scene_build_cpu_s": round(build_cpu, 2),
        "s_per_frame": round(wall / len(clip), 4),
        "cpu_s_per_frame": round(cpu / len(clip), 4),
        "objects": clip.meta["object_kinds"],
        "coverage_mean": round(clip.meta["mask_coverage"]["mean"], 3),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--width", type=int, default=854)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--layouts", default="room,street,plaza")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    rows = [measure(lay, args.frames, args.width, args.height) for lay in args.layouts.split(",")]
    for r in rows:
        print(json.dumps(r))
    print(
        json.dumps(
            {
                "mean_s_per_frame": round(float(np.mean([r["s_per_frame"] for r in rows])), 4),
                "mean_cpu_s_per_frame": round(float(np.mean([r["cpu_s_per_frame"] for r in rows])), 4),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
