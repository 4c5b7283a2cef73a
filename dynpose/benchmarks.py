"""Benchmarks: every speed figure of the project comes from here, printed as a table and written
as a markdown report (never from timed unit tests).

``noop_rerun``: ingest N single-video shards, materialize them, then time a rerun that must
compute nothing (the ledger answers every shard).
"""

from __future__ import annotations

from dataclasses import dataclass
import time
from pathlib import Path

import numpy as np

from dynpose.evaluation.markdown import machine_line, markdown_table


def write_noise_clip(path: Path, seed: int, frames: int = 12, size: int = 64, fps: int = 12) -> None:
    """A tiny distinct mp4 (random texture drifting), so every file hashes to a new video."""
    from dynpose.domain.synth.io import encode_mp4

    base = np.random.default_rng(seed).integers(0, 255, (size * 2, size * 2, 3), dtype=np.uint8)
    encode_mp4(path, np.stack([base[i : i + size, i : i + size] for i in range(frames)]), fps)


def noop_rerun(workdir: Path, shards: int = 100, lake_url: str | None = None, select: list[str] | None = None, log=print) -> list[dict]:
    """``select`` defaults to the raw products (catalog, frame index): the planning cost per product
    shard is what is measured, and noise clips would only exercise the annotators' failure paths."""
    from dynpose.storage.ingest import ingest
    from dynpose.storage.lake import Lake
    from dynpose.graph.orchestrate import materialize
    from dynpose.graph.settings import IngestSettings

    src = workdir / "videos"
    src.mkdir(parents=True, exist_ok=True)
    for i in range(shards):
        clip = src / f"noise_{i:04d}.mp4"
        if not clip.exists():
            write_noise_clip(clip, seed=i)
    lake_url = lake_url or str(workdir / "lake")
    report = ingest(str(src), Lake(lake_url), IngestSettings(shard_size=1))
    log(report.summary())
    select = select or ["clip_catalog", "sampled_frames"]
    t0 = time.perf_counter()
    first = materialize(lake_url, select=select, progress=True)
    t_first = time.perf_counter() - t0
    rows = []
    for attempt in range(3):
        t0 = time.perf_counter()
        again = materialize(lake_url, select=select, progress=False)
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


@dataclass
class PoseBenchmarkResult:
    tables: list[tuple[str, list[dict]]]
    report: Path
    lake: str


def pose_benchmark(
    out: Path, suite: str | None = None, methods: list[str] | None = None, seed: int = 0, limit: int | None = None,
    executor: str = "in_process", ray_address: str | None = None, settings_file: str | None = None, log=print,
    workers: int | None = None, clips: list[str] | None = None,
) -> PoseBenchmarkResult:
    """Run the asset graph on a synthetic suite and collect the comparison tables.

    Ours and the baselines run on the same sampled frames in the same run; every figure comes from
    the lake's benchmark products (pose_benchmark, reprojection_benchmark, mask_benchmark, ...).
    ``workers`` videos run at a time (default: one per core), so per-video seconds are measured
    with the machine shared; ``workers=1`` gives each video the whole machine. ``limit`` keeps the
    first N clips, ``clips`` those whose names start with one of the given prefixes.
    """
    import os

    import shutil

    import yaml

    from dynpose.storage.ingest import ingest
    from dynpose.storage.lake import Lake
    from dynpose.graph.orchestrate import materialize
    from dynpose.graph.settings import load_settings, settings_to_dict
    from dynpose.domain.synth import generate_suite

    out.mkdir(parents=True, exist_ok=True)
    if suite is None:
        suite_dir = out / "suite"
        if not (suite_dir / "manifest.json").exists():
            log(f"rendering the 'bench' suite (seed {seed}) into {suite_dir}")
            generate_suite(suite_dir, "bench", seed=seed, workers=workers or os.cpu_count() or 1,
                           progress=lambda d, t, n: log(f"  rendered {d}/{t} {n}") if d and n else None)
    else:
        suite_dir = Path(suite)
    source = suite_dir
    if limit or clips:  # a subset: link the chosen clips into a folder of their own
        source = out / "suite_subset"
        _link_subset(suite_dir, source, limit, clips)
    settings = load_settings(settings_file)
    baselines = [m for m in (methods or ["ours", *settings.baseline_poses.methods]) if m != "ours"]
    settings.baseline_poses.methods = tuple(baselines)
    settings_path = out / "settings.yaml"
    settings_path.write_text(yaml.safe_dump(_plain(settings_to_dict(settings))))
    lake_url = str(out / "lake")
    log(ingest(str(source), Lake(lake_url), settings.ingest).summary())
    t0 = time.perf_counter()
    workers = workers or os.cpu_count() or 1
    outcomes = materialize(lake_url, str(settings_path), executor=executor, ray_address=ray_address, workers=workers)
    wall = time.perf_counter() - t0
    failed = [o for o in outcomes if o.action == "failed"]
    if failed:
        raise RuntimeError(f"{len(failed)} product(s) failed: {', '.join(f'{o.product}[{o.shard}]' for o in failed)}")
    lake = Lake(lake_url)
    report_dir = out / "report"
    if report_dir.exists():
        shutil.rmtree(report_dir)
    shutil.copytree(lake.path("reports", "benchmark"), report_dir)
    shutil.copytree(lake.path("reports", "dataset_statistics"), report_dir / "dataset_statistics")
    report = lake.read_product("benchmark_report").to_pylist()
    wanted = set(methods) if methods else None
    main = [_strip(r) for r in report if r["table"].startswith("all videos") and (wanted is None or r["method"] in wanted)]
    subset = [_strip(r) for r in report if not r["table"].startswith("all videos") and (wanted is None or r["method"] in wanted)]
    tables = [("All videos (failures filled)", main), ("Videos where all methods succeed", subset)]
    tables.append(("Our pipeline: mean seconds per stage per video", stage_table(lake)))
    masks = lake.read_product("mask_benchmark")
    if masks is not None and masks.num_rows:
        tables.append(("Dynamic masks: mean IoU against ground truth", [
            {"component": c[4:], "mean IoU": float(np.nanmean(masks.column(c).to_numpy(zero_copy_only=False)))}
            for c in masks.column_names if c.startswith("iou_")
        ]))
    # A rerun on the same --out recomputes only stale partitions, so its wall time covers those alone.
    computed = sum(o.action == "computed" for o in outcomes)
    tables.append(("Run", [{"videos": len({r['video_id'] for r in lake.read_product('pose_benchmark').to_pylist()}),
                            "workers": workers, "wall s": wall, "computed": computed,
                            "up to date": len(outcomes) - computed, "machine": machine_line()}]))
    with open(report_dir / "report.md", "a") as f:
        f.write(f"\n\n## Run\n\n{machine_line()}; {workers} video(s) at a time; wall time {wall:.0f} s for "
                f"{computed} product partition(s) computed ({len(outcomes) - computed} already up to date).\n\n")
        f.write("Our pipeline, mean seconds per stage per video:\n\n" + markdown_table(tables[2][1]) + "\n")
    return PoseBenchmarkResult(tables, report_dir / "report.md", lake_url)


def stage_table(lake) -> list[dict]:
    import json

    rows = [r for r in lake.read_product("camera_poses").to_pylist() if r["method"] == "ours"]
    stages: dict[str, list[float]] = {}
    for r in rows:
        for name, sec in json.loads(r["stage_seconds"] or "{}").items():
            stages.setdefault(name, []).append(sec)
    out = [{"stage": k, "mean s": float(np.mean(v)), "max s": float(np.max(v))} for k, v in stages.items()]
    if rows:
        out.append({"stage": "total", "mean s": float(np.mean([r["seconds"] for r in rows])), "max s": float(np.max([r["seconds"] for r in rows]))})
        out.append({"stage": "peak memory MiB", "mean s": float(np.mean([r["peak_mib"] for r in rows])), "max s": float(np.max([r["peak_mib"] for r in rows]))})
    return out


def _strip(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("table", "shard")}


def _plain(obj):
    """Settings as YAML-safe plain data (tuples -> lists)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _link_subset(suite_dir: Path, target: Path, limit: int | None, prefixes: list[str] | None) -> None:
    import json
    import shutil

    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    clips = json.loads((suite_dir / "manifest.json").read_text())
    clips = clips if isinstance(clips, list) else clips["clips"]
    if prefixes:
        clips = [c for c in clips if any(Path(c["video"]).name.startswith(p) for p in prefixes)]
    clips = clips[:limit] if limit else clips
    if not clips:
        raise SystemExit(f"no clip of {suite_dir} matches --clips {' '.join(prefixes or [])}")
    for c in clips:
        for rel in (c["video"], c["gt_dir"]):
            dst = target / rel
            if not dst.exists():
                dst.symlink_to((suite_dir / rel).resolve())
    (target / "manifest.json").write_text(json.dumps(clips, indent=1))
