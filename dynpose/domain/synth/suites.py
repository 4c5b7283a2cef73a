"""Suites of clips: ``tiny`` (unit tests, demo), ``bench`` (pose accuracy), ``framedrop`` (pose
accuracy with dropped frames), ``filters`` (labels).

Each suite folder gets the clips (``<name>.mp4`` + ``<name>/``), ``manifest.json`` (a list with
one entry per clip), ``labels.csv`` (columns file,suitable,category,reason, like the real-data
labels file) and ``suite.json`` (suite, seed, counts, timings).
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from dynpose.domain.synth.camera_paths import TRAJECTORIES
from dynpose.domain.synth.clip import ClipSpec, render_clip
from dynpose.domain.synth.io import write_clip
from dynpose.domain.synth.variants import UNSUITABLE

MOVING = [t for t in TRAJECTORIES if t != "tripod"]
LAYOUTS = ["room", "street", "plaza"]


def _tiny(seed: int) -> list[tuple[str, ClipSpec]]:
    base = dict(width=320, height=240, fps=12.0, seconds=2.0, crf=20)
    combos = [("room", "handheld_walk"), ("plaza", "orbit"), ("room", "pan_translate")]
    return [
        (f"{k:03d}_{lay}_{traj}", ClipSpec(seed=seed * 1000 + k, layout=lay, trajectory=traj, **base))
        for k, (lay, traj) in enumerate(combos)
    ]


def _bench(seed: int) -> list[tuple[str, ClipSpec]]:
    rng = np.random.default_rng([seed, 2])
    out = []
    # Every layout x trajectory once, plus the three hand-held-like trajectories once more: 24 clips,
    # sized so that `dynpose bench` (ours and both COLMAP baselines) runs in under an hour on 2 cores.
    combos = [(lay, traj) for traj in MOVING for lay in LAYOUTS] + [
        (lay, traj) for traj in ("handheld_walk", "orbit", "pan_translate") for lay in LAYOUTS
    ]
    n_suitable = len(combos)
    for k, (lay, traj) in enumerate(combos):
        # Dynamic content from a few percent of the frame up to ~60%: more objects, some close.
        near = int(rng.choice([0, 1, 2, 3], p=[0.4, 0.3, 0.2, 0.1]))
        spec = ClipSpec(
            seed=seed * 1000 + k,
            layout=lay,
            trajectory=traj,
            width=854,
            height=480,
            fps=float(rng.choice([12.0, 15.0, 24.0], p=[0.45, 0.35, 0.2])),
            seconds=float(rng.choice([4.0, 5.0, 6.0, 8.0], p=[0.3, 0.35, 0.25, 0.1])),
            n_objects=int(rng.integers(1, 4)) + near,
            near_objects=near,
            max_coverage=0.6,
            crf=18,
        )
        out.append((f"{k:03d}_{lay}_{traj}", spec))
    for j, (lay, traj) in enumerate([("room", "handheld_walk"), ("street", "forward"), ("plaza", "orbit")]):
        k = n_suitable + j
        spec = ClipSpec(
            seed=seed * 1000 + k,
            layout=lay,
            trajectory=traj,
            variant="static_scene",
            width=854,
            height=480,
            fps=12.0,
            seconds=6.0,
            crf=18,
        )
        out.append((f"{k:03d}_{lay}_static_scene", spec))
    return out


def _framedrop(seed: int) -> list[tuple[str, ClipSpec]]:
    # Bench-like clips whose scene jumps by 3-15 nominal frames every 4-12 written frames (a sparse
    # photo capture, a fast pan): each layout three times. The scene lasts about twice the video
    # (~10 s), too long a walk for most rooms, so the room gets a slow dolly instead.
    rng = np.random.default_rng([seed, 4])
    combos = [
        ("room", "dolly"),
        ("street", "handheld_walk"),
        ("plaza", "handheld_walk"),
        ("room", "orbit"),
        ("plaza", "orbit"),
        ("room", "pan_translate"),
        ("street", "pan_translate"),
        ("street", "forward"),
        ("plaza", "forward"),
    ]
    out = []
    for k, (lay, traj) in enumerate(combos):
        near = int(rng.choice([0, 1, 2], p=[0.5, 0.3, 0.2]))
        spec = ClipSpec(
            seed=seed * 1000 + 500 + k,  # not a bench seed (those are seed * 1000 + 0..26)
            layout=lay,
            trajectory=traj,
            width=854,
            height=480,
            fps=12.0,
            seconds=5.0,
            n_objects=int(rng.integers(1, 4)) + near,
            near_objects=near,
            max_coverage=0.6,
            crf=18,
            frame_drops=(3, 15),
            drop_spacing=(4, 12),
        )
        out.append((f"{k:03d}_{lay}_{traj}_drops", spec))
    return out


def _filters(
    seed: int, n: int = 204, suitable_frac: float = 0.15, scenes_per_layout: int = 8
) -> list[tuple[str, ClipSpec]]:
    rng = np.random.default_rng([seed, 3])
    n_suit = int(round(n * suitable_frac))
    variants = ["none"] * n_suit + [UNSUITABLE[i % len(UNSUITABLE)] for i in range(n - n_suit)]
    out = []
    for k, var in enumerate(variants):
        lay = LAYOUTS[int(rng.integers(3))]
        traj = MOVING[int(rng.integers(len(MOVING)))]
        spec = ClipSpec(
            seed=seed * 100000 + 5000 + k,
            layout=lay,
            trajectory=traj,
            variant=var,
            width=480,
            height=270,
            fps=12.0,
            seconds=float(rng.choice([3.0, 3.5, 4.0])),
            scene_seed=seed * 1000 + int(rng.integers(scenes_per_layout)),
            crf=int(rng.integers(20, 27)),
            corr_per_pair=16,
            near_objects=int(rng.choice([0, 1, 2], p=[0.6, 0.3, 0.1])),
            texture_scale=0.5625,
            preset="veryfast",
        )  # one texture scale: low-res clips reuse the scene
        out.append((f"{k:03d}_{lay}_{var if var != 'none' else traj}", spec))
    # Clips sharing a scene render one after another, so the scene cache builds each scene once.
    out.sort(key=lambda e: (e[1].layout, e[1].scene_seed, e[0]))
    return out


SUITES: dict[str, Callable[[int], list[tuple[str, ClipSpec]]]] = {
    "tiny": _tiny,
    "bench": _bench,
    "framedrop": _framedrop,
    "filters": _filters,
}
DENSE = {"tiny": True, "bench": True, "framedrop": True, "filters": False}  # depth.npz is large: skipped for filters


def suite_specs(suite: str, seed: int = 0, size: int | None = None) -> list[tuple[str, ClipSpec]]:
    """(name, spec) of every clip of a suite, without rendering. ``size``: the filters suite's
    number of clips (default 204; the same share of suitable clips and the same variant cycle)."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; expected one of {sorted(SUITES)}")
    if size is not None:
        if suite != "filters":
            raise ValueError("only the filters suite has a size")
        return _filters(seed, n=size)
    return SUITES[suite](seed)


def select_clips(suite_dir: str | Path, clips: list[str] | None = None, limit: int | None = None) -> list[dict]:
    """Manifest entries of a suite (``name``, ``video``, ``gt_dir``): those whose names start with one
    of ``clips``, then the first ``limit``."""
    suite = Path(suite_dir)
    entries = json.loads((suite / "manifest.json").read_text())
    entries = entries if isinstance(entries, list) else entries["clips"]
    entries = [{**e, "name": e.get("name") or Path(e["video"]).stem} for e in entries]
    entries = [{**e, "gt_dir": e.get("gt_dir") or e["name"]} for e in entries]
    if clips:
        entries = [e for e in entries if e["name"].startswith(tuple(clips))]
    entries = entries[:limit] if limit else entries
    if not entries:
        raise ValueError(f"no clip of {suite} matches {' '.join(clips or [])}")
    return entries


def write_labels(path: str | Path, entries: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "suitable", "category", "reason"])
        for e in entries:
            w.writerow([e["video"], e["suitable"], e["category"], e["reason"]])


def _render_and_write(spec, out: Path, name: str, dense: bool) -> dict:
    return write_clip(render_clip(spec), out, name, dense=dense)


def generate_suite(
    out_dir: str | Path,
    suite: str,
    seed: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
    limit: int | None = None,
    workers: int = 1,
    size: int | None = None,
) -> Path:
    """Render and write a suite; returns the path of its manifest.json.

    ``progress(done, total, name)`` is called as clips start (one worker) or finish (several) and
    once at the end (name ""). ``limit`` renders only the first clips (for quick looks); ``workers``
    clips render at a time in child processes (the renderer uses one core). Clips are identical
    whatever ``workers`` is: each clip's randomness comes from its own spec."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    specs = suite_specs(suite, seed, size)
    specs = specs[:limit] if limit else specs
    t0 = time.perf_counter()
    if workers <= 1:
        entries = []
        for i, (name, spec) in enumerate(specs):
            if progress:
                progress(i, len(specs), name)
            entries.append(_render_and_write(spec, out, name, DENSE[suite]))
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("forkserver")) as pool:
            futures = {
                pool.submit(_render_and_write, spec, out, name, DENSE[suite]): i for i, (name, spec) in enumerate(specs)
            }
            entries = [None] * len(specs)
            for done, fut in enumerate(as_completed(futures), 1):
                i = futures[fut]
                entries[i] = fut.result()
                if progress:
                    progress(done, len(specs), specs[i][0])
    if progress:
        progress(len(specs), len(specs), "")
    manifest = out / "manifest.json"
    manifest.write_text(json.dumps(entries, indent=1))
    write_labels(out / "labels.csv", entries)
    counts: dict[str, int] = {}
    for e in entries:
        counts[e["variant"]] = counts.get(e["variant"], 0) + 1
    info = {
        "suite": suite,
        "seed": seed,
        "size": size,
        "clips": len(entries),
        "suitable": int(sum(e["suitable"] for e in entries)),
        "variants": counts,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (out / "suite.json").write_text(json.dumps(info, indent=1))
    return manifest
