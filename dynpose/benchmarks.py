"""Benchmarks: every speed figure of the project comes from here, printed as a table and written
as a markdown report (never from timed unit tests).

``noop_rerun``: ingest N single-video shards, materialize them, then time a rerun that must
compute nothing (the ledger answers every shard).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dynpose.domain.filters.cascade import FILTERS
from dynpose.evaluation.markdown import machine_line, markdown_table
from dynpose.evaluation.report import finite_mean, finite_median


def write_noise_clip(path: Path, seed: int, frames: int = 12, size: int = 64, fps: int = 12) -> None:
    """A tiny distinct mp4 (random texture drifting), so every file hashes to a new video."""
    from dynpose.domain.synth.io import encode_mp4

    base = np.random.default_rng(seed).integers(0, 255, (size * 2, size * 2, 3), dtype=np.uint8)
    encode_mp4(path, np.stack([base[i : i + size, i : i + size] for i in range(frames)]), fps)


def noop_rerun(
    workdir: Path, shards: int = 100, lake_url: str | None = None, select: list[str] | None = None, log=print
) -> list[dict]:
    """``select`` defaults to the raw products (catalog, frame index): the planning cost per product
    shard is what is measured, and noise clips would only exercise the annotators' failure paths."""
    from dynpose.graph.orchestrate import materialize
    from dynpose.graph.settings import IngestSettings
    from dynpose.storage.ingest import ingest
    from dynpose.storage.lake import Lake

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
        rows.append(
            {
                "run": f"no-op rerun {attempt + 1}",
                "shards": shards,
                "product shards": len(again),
                "computed": computed,
                "wall s": wall,
                "ms per shard": 1000 * wall / shards,
            }
        )
    rows.insert(
        0,
        {
            "run": "first materialization",
            "shards": shards,
            "product shards": len(first),
            "computed": sum(o.action == "computed" for o in first),
            "wall s": t_first,
            "ms per shard": 1000 * t_first / shards,
        },
    )
    return rows


@dataclass
class PoseBenchmarkResult:
    tables: list[tuple[str, list[dict]]]
    report: Path
    lake: str


def pose_benchmark(
    out: Path,
    suite: str | None = None,
    methods: list[str] | None = None,
    seed: int = 0,
    limit: int | None = None,
    executor: str = "in_process",
    ray_address: str | None = None,
    settings_file: str | None = None,
    log=print,
    workers: int | None = None,
    clips: list[str] | None = None,
    vlm: str | None = None,
) -> PoseBenchmarkResult:
    """Run the asset graph on a synthetic suite and collect the comparison tables.

    Ours and the baselines run on the same sampled frames in the same run; every figure comes from
    the lake's benchmark products (pose_benchmark, reprojection_benchmark, mask_benchmark, ...).
    ``workers`` videos run at a time (default: one per core), so per-video seconds are measured
    with the machine shared; ``workers=1`` gives each video the whole machine. ``limit`` keeps the
    first N clips, ``clips`` those whose names start with one of the given prefixes.

    ``vlm="oracle"``: DynaPo's VLM mask component from the local test server answering with the
    ground-truth object boxes (an upper bound, not a model's figure), and in the same run our
    pipeline once more without it (``OUT/lake_no_vlm``, no baselines), for the with / without table.
    """
    import os
    import shutil

    import yaml

    from dynpose.domain.synth import generate_suite
    from dynpose.graph.orchestrate import materialize
    from dynpose.graph.settings import load_settings, settings_to_dict
    from dynpose.storage.ingest import ingest
    from dynpose.storage.lake import Lake

    out.mkdir(parents=True, exist_ok=True)
    if suite is None:
        suite_dir = out / "suite"
        if not (suite_dir / "manifest.json").exists():
            log(f"rendering the 'bench' suite (seed {seed}) into {suite_dir}")
            generate_suite(
                suite_dir,
                "bench",
                seed=seed,
                workers=workers or os.cpu_count() or 1,
                progress=lambda d, t, n: log(f"  rendered {d}/{t} {n}") if d and n else None,
            )
    else:
        suite_dir = Path(suite)
    source = suite_dir
    if limit or clips:  # a subset: link the chosen clips into a folder of their own
        source = out / "suite_subset"
        _link_subset(suite_dir, source, limit, clips)
    settings = load_settings(settings_file)
    settings.annotation.videos = "all"  # the pose benchmark measures every clip, kept by the filters or not
    baselines = [m for m in (methods or ["ours", *settings.baseline_poses.methods]) if m != "ours"]
    settings.baseline_poses.methods = tuple(baselines)
    settings_path = out / "settings.yaml"
    settings_path.write_text(yaml.safe_dump(_plain(settings_to_dict(settings))))
    lake_url = str(out / "lake")
    log(ingest(str(source), Lake(lake_url), settings.ingest).summary())
    workers = workers or os.cpu_count() or 1

    def run(url: str, path: Path) -> tuple[list, float]:
        t0 = time.perf_counter()
        outcomes = materialize(url, str(path), executor=executor, ray_address=ray_address, workers=workers)
        failed = [o for o in outcomes if o.action == "failed"]
        if failed:
            raise RuntimeError(
                f"{len(failed)} product(s) failed: {', '.join(f'{o.product}[{o.shard}]' for o in failed)}"
            )
        return outcomes, time.perf_counter() - t0

    if vlm not in (None, "oracle"):
        raise ValueError(f"unknown pose benchmark VLM {vlm!r}: use 'oracle'")
    no_vlm = None
    if vlm:  # first the pipeline without the VLM (and no baselines), then the main run with it
        no_vlm_url, no_vlm_settings = str(out / "lake_no_vlm"), out / "settings_no_vlm.yaml"
        plain = dataclasses.replace(
            settings,
            baseline_poses=dataclasses.replace(settings.baseline_poses, methods=()),
            vlm=dataclasses.replace(settings.vlm, model=""),  # no VLM, whatever the environment says
        )
        no_vlm_settings.write_text(yaml.safe_dump(_plain(settings_to_dict(plain))))
        log(ingest(str(source), Lake(no_vlm_url), settings.ingest).summary())
        log("without the VLM component (ours only) ...")
        run(no_vlm_url, no_vlm_settings)
        no_vlm = Lake(no_vlm_url)
        log("with the VLM component (oracle server) ...")
    labels = _object_labels(Lake(lake_url), suite_dir) if vlm else {}
    with _bench_vlm(vlm, settings, settings_path, labels) as server:
        outcomes, wall = run(lake_url, settings_path)
        requests = server.requests if server else 0
    lake = Lake(lake_url)
    report_dir = out / "report"
    if report_dir.exists():
        shutil.rmtree(report_dir)
    shutil.copytree(lake.path("reports", "benchmark"), report_dir)
    shutil.copytree(lake.path("reports", "dataset_statistics"), report_dir / "dataset_statistics")
    report = lake.read_product("benchmark_report").to_pylist()
    wanted = set(methods) if methods else None
    main = [
        _strip(r) for r in report if r["table"].startswith("all videos") and (wanted is None or r["method"] in wanted)
    ]
    subset = [
        _strip(r)
        for r in report
        if not r["table"].startswith("all videos") and (wanted is None or r["method"] in wanted)
    ]
    tables = [("All videos (failures filled)", main), ("Videos where all methods succeed", subset)]
    tables.append(("Our pipeline: mean seconds per stage per video", stage_table(lake)))
    masks = lake.read_product("mask_benchmark")
    if masks is not None and masks.num_rows:
        tables.append(
            (
                "Dynamic masks: mean IoU against ground truth",
                [
                    {"component": c[4:], "mean IoU": finite_mean(masks.column(c).to_pylist())}
                    for c in masks.column_names
                    if c.startswith("iou_")
                ],
            )
        )
    if no_vlm is not None:
        tables.append(
            ("DynaPo VLM masks (oracle server: an upper bound): ours with and without", _vlm_pose_table(lake, no_vlm))
        )
        tables.append(("VLM requests", [{"server": vlm, "requests": requests, **_vlm_status_counts(lake)}]))
    # A rerun on the same --out recomputes only stale partitions, so its wall time covers those alone.
    computed = sum(o.action == "computed" for o in outcomes)
    tables.append(
        (
            "Run",
            [
                {
                    "videos": len({r["video_id"] for r in lake.read_product("pose_benchmark").to_pylist()}),
                    "workers": workers,
                    "wall s": wall,
                    "computed": computed,
                    "up to date": len(outcomes) - computed,
                    "machine": machine_line(),
                }
            ],
        )
    )
    with open(report_dir / "report.md", "a") as f:
        f.write(
            f"\n\n## Run\n\n{machine_line()}; {workers} video(s) at a time; wall time {wall:.0f} s for "
            f"{computed} product partition(s) computed ({len(outcomes) - computed} already up to date).\n\n"
        )
        f.write("Our pipeline, mean seconds per stage per video:\n\n" + markdown_table(tables[2][1]) + "\n")
        for title, rows in tables:
            if title.startswith(("DynaPo", "VLM requests")):
                f.write(f"\n## {title}\n\n{markdown_table(rows)}\n")
    return PoseBenchmarkResult(tables, report_dir / "report.md", lake_url)


def _vlm_status_counts(lake) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in lake.read_product("dynamic_masks").to_pylist():
        key = f"vlm {r.get('vlm_status')}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def _vlm_pose_table(lake, no_vlm) -> list[dict]:
    """Per clip: ATE and mask IoU of ours with the VLM component (``lake``) and without (``no_vlm``)."""

    def ours(lk) -> dict[str, dict]:
        return {r["video_id"]: r for r in lk.read_product("pose_benchmark").to_pylist() if r["method"] == "ours"}

    def ious(lk) -> dict[str, dict]:
        return {r["video_id"]: r for r in lk.read_product("mask_benchmark").to_pylist()}

    with_, without, iou_with, iou_without = ours(lake), ours(no_vlm), ious(lake), ious(no_vlm)
    rows = []
    for vid in sorted(with_, key=lambda v: with_[v]["clip"] or v):
        a, b, m, n = with_[vid], without.get(vid, {}), iou_with.get(vid, {}), iou_without.get(vid, {})
        rows.append(
            {
                "clip": a["clip"],
                "ATE with": a["ate"],
                "ATE without": b.get("ate"),
                "registered with": a["registered_ratio"],
                "registered without": b.get("registered_ratio"),
                "IoU vlm": m.get("iou_vlm"),
                "IoU union with": m.get("iou_union"),
                "IoU union without": n.get("iou_union"),
            }
        )
    if rows:
        mean = {k: finite_mean(r[k] for r in rows) for k in rows[0] if k != "clip"}
        median = {k: finite_median(r[k] for r in rows) for k in rows[0] if k != "clip"}
        rows += [{"clip": "mean", **mean}, {"clip": "median", **median}]
    return rows


def stage_table(lake) -> list[dict]:
    import json

    rows = [r for r in lake.read_product("camera_poses").to_pylist() if r["method"] == "ours"]
    stages: dict[str, list[float]] = {}
    for r in rows:
        for name, sec in json.loads(r["stage_seconds"] or "{}").items():
            stages.setdefault(name, []).append(sec)
    out = [{"stage": k, "mean s": float(np.mean(v)), "max s": float(np.max(v))} for k, v in stages.items()]
    if rows:
        out.append(
            {
                "stage": "total",
                "mean s": float(np.mean([r["seconds"] for r in rows])),
                "max s": float(np.max([r["seconds"] for r in rows])),
            }
        )
        out.append(
            {
                "stage": "peak memory MiB",
                "mean s": float(np.mean([r["peak_mib"] for r in rows])),
                "max s": float(np.max([r["peak_mib"] for r in rows])),
            }
        )
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

    from dynpose.domain.synth.suites import select_clips

    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    try:
        clips = select_clips(suite_dir, prefixes, limit)
    except ValueError as exc:
        raise SystemExit(f"{exc} (--clips)") from exc
    for c in clips:
        for rel in (c["video"], c["gt_dir"]):
            dst = target / rel
            if not dst.exists():
                dst.symlink_to((suite_dir / rel).resolve())
    (target / "manifest.json").write_text(json.dumps(clips, indent=1))


@dataclass
class FilterBenchmarkResult:
    tables: list[tuple[str, list[dict]]]
    report: Path
    lake: str


FILTER_PRODUCTS = ["clip_catalog", *[f"filter_{n}" for n in FILTERS], "filter_decisions", "filter_benchmark"]


VLM_NOTES = {
    None: "VLM: the endpoint of the settings (none by default: the stage is skipped, the cascade decides without it).",
    "oracle": "VLM: **oracle** (a local server answering the eight questions from the generator's labels). It is a "
    "perfect VLM: the +vlm rows are the cascade's ceiling with one, an upper bound and not a model's figure.",
    "garbage": "VLM: a local server whose every answer is malformed. Every video is `vlm_bad_answer`, no score is "
    "guessed, and the cascade decides as it does without a VLM.",
}


@contextlib.contextmanager
def _bench_vlm(kind, settings, settings_path: Path, labels: dict):
    """Point the settings at a local VLM server answering from ``labels`` for the run (or, with no
    ``kind``, leave them as they are)."""
    import yaml

    from dynpose.evaluation.vlm_server import vlm_server
    from dynpose.graph.settings import settings_to_dict

    if kind is None:
        yield None
        return
    if kind not in ("oracle", "garbage"):
        raise ValueError(f"unknown benchmark VLM {kind!r}: use 'oracle' or 'garbage'")
    with vlm_server(kind, labels=labels) as server:
        settings.vlm.base_url, settings.vlm.model = server.base_url, f"{kind}-vlm"
        settings.vlm.requests_per_minute, settings.vlm.max_retries = 0, 0
        settings_path.write_text(yaml.safe_dump(_plain(settings_to_dict(settings))))
        yield server


def _suite_videos(lake) -> dict[str, str]:
    """{video id: file name} of an ingested suite (ids are content hashes, known once ingested)."""
    from dynpose.storage.ingest import Registry

    registry = Registry(lake)
    return {v["video_id"]: v["uri"].rsplit("/", 1)[-1] for s in registry.shards() for v in registry.videos(s)}


def _question_labels(lake, suite_dir: Path) -> dict:
    """The oracle's answers to the filter's questions, from the suite's labels."""
    import csv

    from dynpose.evaluation.filters import oracle_labels

    with open(suite_dir / "labels.csv") as f:
        reason = {r["file"]: r["reason"] for r in csv.DictReader(f)}
    return oracle_labels({vid: reason[name] for vid, name in _suite_videos(lake).items()})


def _object_labels(lake, suite_dir: Path) -> dict:
    """The oracle's DynaPo objects: each frame's ground-truth object boxes (read when asked)."""
    import json

    from dynpose.evaluation.ground_truth import load_ground_truth

    clips = {c["video"]: c for c in json.loads((suite_dir / "manifest.json").read_text())}

    class Objects:  # loads the clip's ground truth on first use, in the server's thread
        def __init__(self, gt_dir: Path):
            self.gt_dir, self.gt = gt_dir, None

        def __call__(self, frame: int) -> list[dict]:
            self.gt = self.gt or load_ground_truth(str(self.gt_dir))
            return self.gt.objects(frame)

    return {
        vid: {"objects": Objects(suite_dir / clips[name]["gt_dir"])}
        for vid, name in _suite_videos(lake).items()
        if name in clips
    }


def _vlm_table(lake, kind, requests: int) -> list[dict]:
    rows = lake.read_product("filter_vlm").to_pylist()
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return [
        {
            "server": kind or "settings",
            "videos": len(rows),
            **{f"status {k}": v for k, v in sorted(counts.items())},
            "requests": requests,
            "tokens in": sum(r["tokens_in"] or 0 for r in rows),
        }
    ]


def filter_benchmark(
    out: Path,
    suite: str | None = None,
    seed: int = 1,
    settings_file: str | None = None,
    workers: int | None = None,
    tune: bool = False,
    size: int | None = None,
    vlm: str | None = None,
    log=print,
) -> FilterBenchmarkResult:
    """Every filter on every video of a labelled suite (no gating, so every curve is complete), the
    cascade's staged decision, and the Table 5 style report. ``tune`` also fits the cascade's
    thresholds on this suite: only ever on a tuning split (seed 0), never on the one reported.

    ``vlm="oracle"`` runs the VLM stage against the local test server answering from the suite's
    labels (a perfect VLM: the cascade's ceiling, not a model's figure); ``vlm="garbage"`` against
    one whose every answer is malformed (the cascade must fall back to its no-VLM decision)."""
    import os
    import shutil

    import yaml

    from dynpose.domain.synth import generate_suite
    from dynpose.evaluation.filters import Labelled, tune_cascade
    from dynpose.evaluation.markdown import write_markdown_with_plots
    from dynpose.evaluation.report import filter_table, plot_pr_rows
    from dynpose.graph.orchestrate import materialize
    from dynpose.graph.settings import load_settings, settings_to_dict
    from dynpose.storage.ingest import ingest
    from dynpose.storage.lake import Lake

    out.mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    if suite is None:
        suite_dir = out / "suite"
        if not (suite_dir / "manifest.json").exists():
            log(f"rendering the 'filters' suite (seed {seed}) into {suite_dir}")
            generate_suite(suite_dir, "filters", seed=seed, workers=workers, size=size)
    else:
        suite_dir = Path(suite)
    settings = load_settings(settings_file)
    settings.filter_decisions.mode = "all"
    settings_path = out / "settings.yaml"
    settings_path.write_text(yaml.safe_dump(_plain(settings_to_dict(settings))))
    lake_url = str(out / "lake")
    log(ingest(str(suite_dir), Lake(lake_url), settings.ingest).summary())
    labels = _question_labels(Lake(lake_url), suite_dir) if vlm == "oracle" else {}
    with _bench_vlm(vlm, settings, settings_path, labels) as server:
        t0 = time.perf_counter()
        outcomes = materialize(lake_url, str(settings_path), select=FILTER_PRODUCTS, workers=workers)
        wall = time.perf_counter() - t0
        requests = server.requests if server else 0
    failed = [o for o in outcomes if o.action == "failed"]
    if failed:
        raise RuntimeError(f"{len(failed)} product(s) failed: {', '.join(f'{o.product}[{o.shard}]' for o in failed)}")
    lake = Lake(lake_url)
    bench = lake.read_product("filter_benchmark").to_pylist()
    catalog = {r["video_id"]: r for r in lake.read_product("clip_catalog").to_pylist()}
    decisions = lake.read_product("filter_decisions").to_pylist()
    tables = [("Table 5: each filter alone, the cumulative ablation, the cascade", filter_table(bench))]
    by_category: dict[str, dict] = {}
    for d in decisions:
        c = catalog[d["video_id"]]
        key = c["label_category"] or c["status"]
        row = by_category.setdefault(key, {"category": key, "videos": 0, "kept": 0})
        row["videos"] += 1
        row["kept"] += int(bool(d["kept"]))
        if d["stage_left"]:
            row[f"left at {d['stage_left']}"] = row.get(f"left at {d['stage_left']}", 0) + 1
    stages = sorted({k for r in by_category.values() for k in r} - {"category", "videos", "kept"})
    tables.append(
        (
            "Where each category left the cascade",
            [
                {
                    "category": r["category"],
                    "videos": r["videos"],
                    "kept": r["kept"],
                    **{s: r.get(s, 0) for s in stages},
                }
                for r in sorted(by_category.values(), key=lambda r: r["category"])
            ],
        )
    )
    cost = []
    for name in FILTERS:
        rows = [r for r in lake.read_product(f"filter_{name}").to_pylist() if r["score"] is not None]
        per10 = [
            10.0 * r["seconds"] / catalog[r["video_id"]]["duration_s"]
            for r in rows
            if catalog[r["video_id"]]["duration_s"]
        ]
        cost.append(
            {
                "filter": name,
                "videos scored": len(rows),
                "mean s / video": float(np.mean([r["seconds"] for r in rows])) if rows else float("nan"),
                "mean s / 10 s of video": float(np.mean(per10)) if per10 else float("nan"),
            }
        )
    tables.append(
        ("Seconds per video per filter (each in its own child process; includes decoding or the frame cache)", cost)
    )
    if tune:
        labelled = [
            Labelled(v, int(c["label_suitable"]), c["label_category"])
            for v, c in catalog.items()
            if c["label_suitable"] is not None and c["status"] == "ok"
        ]
        scores = {d["video_id"]: {n: d[f"{n}_score"] for n in FILTERS} for d in decisions}
        tuned, fit = tune_cascade(labelled, scores)
        tables.append(
            (
                "Cascade thresholds fitted on this suite (tuning split only)",
                [
                    {
                        "stage_thresholds": ", ".join(f"{t:.3f}" for t in tuned.stage_thresholds),
                        "final_threshold": tuned.final_threshold,
                        **fit,
                    }
                ],
            )
        )
    tables.append(("VLM stage", _vlm_table(lake, vlm, requests)))
    tables.append(("Run", [{"videos": len(decisions), "workers": workers, "wall s": wall, "machine": machine_line()}]))
    md = [f"# Filter benchmark: {suite_dir}", "", machine_line(), ""]
    md += [VLM_NOTES[vlm], ""]
    for title, rows in tables:
        md += [f"## {title}", "", markdown_table(rows) if rows else "_No rows (labels of one class only?)._", ""]
    plots = {"pr_curves.png": plot_pr_rows([r for r in bench if r["kind"] != "cumulative"])} if bench else {}
    if plots:
        md += ["![PR curves](pr_curves.png)", ""]
    report_dir = out / "report"
    if report_dir.exists():
        shutil.rmtree(report_dir)
    path = write_markdown_with_plots(report_dir, "report.md", "\n".join(md), plots)
    return FilterBenchmarkResult(tables, path, lake_url)


# -- lake scale: planning over many shards -------------------------------------------------------

BIG_LAKE_MARKER = "_bench/big_lake.json"


def _fake_row(schema, shard: str, vid: str) -> dict:
    row = {}
    for f in schema:
        if f.name == "video_id":
            row[f.name] = vid
        elif f.name == "status":
            row[f.name] = "ok"
        elif f.name == "method":
            row[f.name] = "ours"
        elif f.name == "name":
            row[f.name] = "cascade"
    return row


def _tag(n: int, k: int) -> str:
    """A placeholder of ``n`` characters, distinct for each ``k`` (never in Parquet's own bytes)."""
    return "~" * (n - 3) + f"{k:03d}"


def _plain_parquet(table) -> bytes:
    """Uncompressed, no dictionary, no statistics: a value's bytes appear verbatim, once."""
    import io

    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, compression="none", use_dictionary=False, write_statistics=False)
    return buf.getvalue()


class _ShardTemplates:
    """Per product, the table and ledger-record Parquet bytes of one shard with placeholders for
    the shard key, video id and versions: a shard's files are byte substitutions (a real Parquet
    file each), so 10,000 shards are written in minutes, not hours."""

    def __init__(self, settings, now):
        import pyarrow as pa

        from dynpose.graph.products import settings_hash, topological
        from dynpose.storage.ledger import LEDGER_SCHEMA, LedgerRecord

        self.shard_tag, self.vid_tag, self.version_tag = _tag(6, 0), _tag(20, 1), _tag(16, 2)
        self.products = [p for p in topological() if not p.aggregate]
        self.dep_tags = {p.name: _tag(16, 10 + i) for i, p in enumerate(self.products)}
        self.tables, self.records, self.cfg = {}, {}, {}
        for p in self.products:
            row = _fake_row(p.schema, self.shard_tag, self.vid_tag)
            self.tables[p.name] = _plain_parquet(pa.Table.from_pylist([row], schema=p.schema))
            self.cfg[p.name] = settings_hash(p, settings)
            rec = LedgerRecord(
                shard=self.shard_tag,
                product=p.name,
                action="computed",
                code_version=p.code_version,
                config_hash=self.cfg[p.name],
                input_versions={d: self.dep_tags[d] for d in p.deps},
                data_version=self.version_tag,
                rows=1,
                reason="never computed",
                run_id="big-lake",
                recorded_at=now,
            )
            self.records[p.name] = (rec, _plain_parquet(pa.Table.from_pylist([rec.to_row()], schema=LEDGER_SCHEMA)))

    @staticmethod
    def fill(template: bytes, values: dict[str, str]) -> bytes:
        for tag, value in values.items():
            assert len(tag) == len(value), (tag, value)
            template = template.replace(tag.encode(), value.encode())
        return template


def big_lake_shard(lake, shard: str, settings, templates=None, now=None) -> dict[str, bytes]:
    """Every file a real run leaves for one single-video shard (manifest, each per-shard product's
    table with its real schema, ledger record and state, versions chained as the ledger computes
    them), as {path: bytes}."""
    import dataclasses as dc
    import datetime as dt
    import hashlib
    import json
    import uuid

    from dynpose.storage.ledger import data_version

    now = now or dt.datetime.now(dt.timezone.utc)
    templates = templates or _ShardTemplates(settings, now)
    vid = hashlib.sha256(shard.encode()).hexdigest()[:20]
    files = {}
    manifest = {
        "shard": shard,
        "created_at": now.isoformat(),
        "source": "synthetic://big-lake",
        "videos": [
            {
                "video_id": vid,
                "uri": f"synthetic://big-lake/{shard}/clip.mp4",
                "size": 1000,
                "ingested_at": now.isoformat(),
                "caption": None,
                "label_suitable": None,
                "label_category": None,
                "label_reason": None,
                "ground_truth_uri": None,
            }
        ],
    }
    files[lake.path("_shards", f"{shard}.json")] = json.dumps(manifest, sort_keys=True, indent=1).encode()
    versions: dict[str, str] = {}
    stamp = now.strftime("%Y%m%dT%H%M%S%f")
    for p in templates.products:
        payload = templates.fill(templates.tables[p.name], {templates.shard_tag: shard, templates.vid_tag: vid})
        versions[p.name] = data_version(payload, p.code_version, templates.cfg[p.name])
        rec, record_bytes = templates.records[p.name]
        rec = dc.replace(
            rec, shard=shard, input_versions={d: versions[d] for d in p.deps}, data_version=versions[p.name]
        )
        values = {templates.shard_tag: shard, templates.version_tag: versions[p.name]}
        values.update({templates.dep_tags[d]: versions[d] for d in p.deps})
        files[lake.table_path(p.name, shard)] = payload
        ledger_path = lake.path("_ledger", p.name, f"shard={shard}", f"{stamp}-{uuid.uuid4().hex[:8]}.parquet")
        files[ledger_path] = templates.fill(record_bytes, values)
        files[lake.path("_state", p.name, f"{shard}.json")] = json.dumps(
            rec.to_row(), sort_keys=True, indent=1, default=str
        ).encode()
    return files


def _record_files(lake, rec, payload: bytes, schema, uuid) -> dict[str, bytes]:
    import json

    import pyarrow as pa

    from dynpose.storage.lake import Lake

    stamp = rec.recorded_at.strftime("%Y%m%dT%H%M%S%f")
    row = rec.to_row()
    return {
        lake.table_path(rec.product, rec.shard): payload,
        lake.path("_ledger", rec.product, f"shard={rec.shard}", f"{stamp}-{uuid.uuid4().hex[:8]}.parquet"): (
            Lake.parquet_bytes(pa.Table.from_pylist([row], schema=schema))
        ),
        lake.path("_state", rec.product, f"{rec.shard}.json"): json.dumps(
            row, sort_keys=True, indent=1, default=str
        ).encode(),
    }


def _write_files(lake, files: dict[str, bytes]) -> None:
    """Plain writes (this is a generated lake: no temporary names, no fsync); S3 PUTs concurrently."""
    import os

    if not lake.is_local:
        lake.fs.pipe(files)
        return
    made = set()
    for path, data in files.items():
        d = os.path.dirname(path)
        if d not in made:
            os.makedirs(d, exist_ok=True)
            made.add(d)
        with open(path, "wb") as f:
            f.write(data)


def write_big_lake_aggregates(lake, settings) -> None:
    """The aggregate products over every shard, with the input versions the ledger would record."""
    import uuid

    import pyarrow as pa

    from dynpose.graph.products import settings_hash, topological
    from dynpose.storage.lake import Lake
    from dynpose.storage.ledger import LEDGER_SCHEMA, LedgerRecord, LedgerSnapshot, data_version

    snap = LedgerSnapshot(lake)
    files = {}
    for p in topological():
        if not p.aggregate:
            continue
        schema = p.schema or pa.schema([("statistic", pa.string()), ("value", pa.float64())])
        payload = Lake.parquet_bytes(pa.Table.from_pylist([_fake_row(schema, "all", "")], schema=schema))
        cfg = settings_hash(p, settings)
        rec = LedgerRecord(
            shard="all",
            product=p.name,
            action="computed",
            code_version=p.code_version,
            config_hash=cfg,
            input_versions=snap.aggregate_input_versions(p.deps),
            data_version=data_version(payload, p.code_version, cfg),
            rows=1,
            reason="never computed",
            run_id="big-lake",
        )
        files.update(_record_files(lake, rec, payload, LEDGER_SCHEMA, uuid))
        _write_files(lake, files)  # the next aggregate may read this one's state
        snap = LedgerSnapshot(lake)
        files = {}


def make_big_lake(lake_url: str, shards: int = 10_000, settings_file: str | None = None, log=print) -> dict:
    """A lake of ``shards`` single-video shards as a real run leaves it (no videos: catalog, small
    product tables, ledger records and states): a no-op materialize finds everything fresh. Reused
    when the lake already holds that many shards made this way."""
    import datetime as dt
    import json

    from dynpose.graph.settings import load_settings
    from dynpose.storage.lake import Lake

    lake = Lake(lake_url)
    marker = lake.path(BIG_LAKE_MARKER)
    if lake.exists(marker):
        info = json.loads(lake.get_bytes(marker))
        if info.get("shards") == shards:
            log(f"reusing the big lake at {lake.url} ({shards} shards)")
            return info
        raise SystemExit(f"{lake.url} holds a big lake of {info.get('shards')} shards, not {shards}: use another")
    settings = load_settings(settings_file)
    now = dt.datetime.now(dt.timezone.utc)
    templates = _ShardTemplates(settings, now)
    t0 = time.perf_counter()
    batch: dict[str, bytes] = {}
    for i in range(shards):
        batch.update(big_lake_shard(lake, f"s{i:05d}", settings, templates, now))
        if len(batch) > 4000 or i == shards - 1:
            _write_files(lake, batch)
            batch = {}
            log(f"  {i + 1}/{shards} shards written ({time.perf_counter() - t0:.0f} s)")
    write_big_lake_aggregates(lake, settings)
    info = {"shards": shards, "built_s": round(time.perf_counter() - t0, 1), "created_at": now.isoformat()}
    lake.put_bytes(marker, json.dumps(info).encode())
    return info


def _plan_everything(lake, settings, ledger=None, shards=None) -> dict[tuple[str, str], str]:
    """What a materialize of every product would run, before running anything: {(product, shard): reason}."""
    from dynpose.graph.orchestrate import plan_shard
    from dynpose.graph.products import aggregate_names, shard_names
    from dynpose.graph.steps.base import AGGREGATE
    from dynpose.storage.ingest import Registry
    from dynpose.storage.ledger import LedgerSnapshot

    ledger = ledger if ledger is not None else LedgerSnapshot(lake)
    stale = {}
    for shard in shards if shards is not None else Registry(lake).shards():
        stale.update({(p, shard): r for p, r in plan_shard(lake, shard, settings, shard_names(), ledger).stale.items()})
    if shards is None:
        agg = plan_shard(lake, AGGREGATE, settings, aggregate_names(), ledger)
        stale.update({(p, AGGREGATE): r for p, r in agg.stale.items()})
    return stale


def lake_scale(
    workdir: Path, shards: int = 10_000, lake_url: str | None = None, catalog: bool | None = None, log=print
) -> list[dict]:
    """Status and planning over a lake of ``shards`` generated shards (``make_big_lake``): where the
    time goes, a no-op plan, and the plan after one new shard is ingested (then computed).
    ``catalog``: also time the DuckDB catalog rebuild (default: up to 2,000 shards; minutes beyond)."""
    import os
    import subprocess
    import sys

    from dynpose.graph.orchestrate import status
    from dynpose.graph.settings import load_settings
    from dynpose.storage.ingest import Registry
    from dynpose.storage.lake import Lake
    from dynpose.storage.ledger import Ledger, LedgerSnapshot
    from dynpose.storage.sql import build_catalog

    lake_url = lake_url or str(workdir / "lake")
    catalog = shards <= 2000 if catalog is None else catalog
    info = make_big_lake(lake_url, shards, log=log)
    lake = Lake(lake_url)
    settings = load_settings(None)
    rows = []

    cpu0 = [time.process_time()]

    def row(measure, seconds, detail="", cpu=True):
        """``cpu``: this process's CPU seconds since the previous row (the machine's load inflates wall time)."""
        cpu_s = time.process_time() - cpu0[0]
        cpu0[0] = time.process_time()
        cpu_text = round(cpu_s, 3) if cpu else ""
        rows.append({"measure": measure, "seconds": round(seconds, 3), "cpu s": cpu_text, "detail": detail})
        log(f"  {measure}: {seconds:.2f} s {detail}")

    built = f"{shards} shards, {info.get('created_at', '')}"
    row("build the lake (or reuse it)", info.get("built_s", 0.0), built, False)
    t0 = time.perf_counter()
    imports = "import dynpose.graph.orchestrate, dynpose.cli"
    subprocess.run([sys.executable, "-c", imports], check=True, env=dict(os.environ))
    row("Python start and imports (every command pays them)", time.perf_counter() - t0, "a new process", False)
    for attempt in ("first", "again"):
        timer: dict = {}
        t0 = time.perf_counter()
        counts = status(lake_url, timer=timer)
        fresh = sum(r["fresh"] for r in counts)
        total = sum(r["shards"] for r in counts)
        row(f"status() in process ({attempt})", time.perf_counter() - t0, f"{fresh}/{total} product shards fresh")
    for phase, seconds in timer.items():
        row(f"  {phase}", seconds, cpu=False)
    cpu0[0] = time.process_time()
    t0 = time.perf_counter()
    registry = Registry(lake)
    videos = sum(len(registry.videos(s)) for s in registry.shards())
    row("  registry: every manifest (videos per shard)", time.perf_counter() - t0, f"{videos} videos")
    if catalog:
        t0 = time.perf_counter()
        views = build_catalog(lake)
        row("  DuckDB catalog rebuild (`dynpose status`: VLM spend)", time.perf_counter() - t0, f"{len(views)} views")
    t0 = time.perf_counter()
    stale = _plan_everything(lake, settings)
    row("no-op materialize plan (every shard, aggregates)", time.perf_counter() - t0, f"{len(stale)} to compute")
    sample = Registry(lake).shards()[:100]
    cpu0[0] = time.process_time()
    t0 = time.perf_counter()
    _plan_everything(lake, settings, ledger=Ledger(lake), shards=sample)
    per_shard = (time.perf_counter() - t0) / max(1, len(sample))
    row(
        "  before: one state file read per input (per-file ledger)",
        per_shard * shards,
        f"{1000 * per_shard:.1f} ms per shard x {shards} (measured on {len(sample)})",
        False,
    )
    # One new shard: ingested (its manifest), planned; computed (its files), planned again.
    new = f"s{shards:05d}"
    files = big_lake_shard(lake, new, settings)
    manifest = lake.path("_shards", f"{new}.json")
    try:
        lake.put_bytes(manifest, files[manifest])
        t0 = time.perf_counter()
        stale = _plan_everything(lake, settings)
        shards_hit = sorted({s for _p, s in stale})
        row("plan after one new shard", time.perf_counter() - t0, f"{len(stale)} to compute, shards {shards_hit}")
        _write_files(lake, {p: d for p, d in files.items() if p != manifest})
        t0 = time.perf_counter()
        stale = _plan_everything(lake, settings)
        row(
            "plan after its run",
            time.perf_counter() - t0,
            "to compute: " + ", ".join(f"{p}[{s}]" for p, s in sorted(stale)),
        )
    finally:  # the lake goes back to its N shards, to be reused
        for path in files:
            with contextlib.suppress(FileNotFoundError):
                lake.fs.rm(path)
        LedgerSnapshot(lake).prefetch(list(_products()))  # the index forgets the removed shard
    return rows


def _products():
    from dynpose.graph.products import PRODUCTS

    return PRODUCTS


# -- export throughput ------------------------------------------------------------------------------


def export_base_lake(workdir: Path, log=print) -> str:
    """The tiny synthetic suite ingested two videos a shard and annotated with every video (as
    tests/test_export.py builds it), in ``workdir/base``; built once, then reused. Returns its URL."""
    import shutil

    from dynpose.domain.synth import generate_suite
    from dynpose.graph.orchestrate import materialize
    from dynpose.graph.settings import IngestSettings
    from dynpose.storage.ingest import ingest
    from dynpose.storage.lake import Lake

    base = workdir / "base"
    lake_url = str(base / "lake")
    built = base / "built.txt"
    if built.exists():
        log(f"reusing the annotated tiny lake {lake_url}")
        return lake_url
    shutil.rmtree(base, ignore_errors=True)  # an interrupted build
    base.mkdir(parents=True)
    t0 = time.perf_counter()
    generate_suite(base / "tiny", "tiny", seed=0)
    settings = base / "annotate_all.yaml"
    settings.write_text("annotation:\n  videos: all\n")
    ingest(str(base / "tiny"), Lake(lake_url), IngestSettings(shard_size=2))
    select = ["clip_catalog", *[f"filter_{n}" for n in FILTERS], "filter_decisions", "sampled_frames"]
    select += ["dynamic_masks", "tracklets", "camera_poses", "pose_quality"]
    outcomes = materialize(lake_url, str(settings), select=select, progress=False)
    failed = [f"{o.product}[{o.shard}]" for o in outcomes if o.action == "failed"]
    if failed:
        raise RuntimeError(f"annotating the tiny lake failed: {', '.join(failed)}")
    built.write_text(f"built in {time.perf_counter() - t0:.1f} s\n")
    log(f"annotated tiny lake {lake_url} in {time.perf_counter() - t0:.1f} s")
    return lake_url


def scale_lake(src_url: str, dst_url: str, shards: int, per_shard: int) -> int:
    """Write ``shards`` x ``per_shard`` videos into the (new) lake ``dst_url`` by replicating the
    per-shard product rows of ``src_url`` under new video ids, round robin over its videos, with a
    computed ledger record per product shard. The copies keep their source_uri: frames decode from
    the real videos. Returns the number of videos."""
    import hashlib
    import uuid

    import pyarrow as pa

    from dynpose.storage.lake import Lake
    from dynpose.storage.ledger import Ledger, LedgerRecord

    src, dst = Lake(src_url), Lake(dst_url)
    ledger = Ledger(dst)
    first = src.product_shards("clip_catalog")[0]
    products = [p for p in src.products() if src.exists(src.table_path(p, first))]  # per-shard ones
    tables = {}
    for p in products:
        t = src.read_product(p)
        tables[p] = t.drop_columns(["shard"]) if "shard" in t.column_names else t
    videos = sorted(set(tables["clip_catalog"]["video_id"].to_pylist()))
    positions = {}  # product -> {video id: row indices}
    for p, t in tables.items():
        by_video: dict[str, list[int]] = {}
        for i, v in enumerate(t["video_id"].to_pylist()):
            by_video.setdefault(v, []).append(i)
        positions[p] = by_video
    for k in range(shards):
        shard = f"s{k:05d}"
        copies = [
            (hashlib.sha256(f"bench-export-{k}-{i}".encode()).hexdigest(), videos[(k * per_shard + i) % len(videos)])
            for i in range(per_shard)
        ]
        for p, t in tables.items():
            take, ids = [], []
            for new, old in copies:
                rows = positions[p].get(old, [])
                take += rows
                ids += [new] * len(rows)
            part = t.take(pa.array(take, pa.int64()))
            col = part.schema.get_field_index("video_id")
            part = part.set_column(col, part.schema.field(col), pa.array(ids, part.schema.field(col).type))
            dst.put_bytes(dst.table_path(p, shard), Lake.parquet_bytes(part))
            ledger.append(
                LedgerRecord(
                    shard, p, "computed", "bench", "bench", data_version=uuid.uuid4().hex[:16], rows=part.num_rows
                )
            )
    return shards * per_shard


def _clear_destination(url: str) -> None:
    from dynpose.storage.lake import Lake

    store = Lake(url)
    with contextlib.suppress(FileNotFoundError):
        if store.fs.exists(store.root):
            store.fs.rm(store.root, recursive=True)
    store.fs.invalidate_cache()


def export_throughput(
    workdir: Path,
    shards: int = 10,
    per_shard: int = 64,
    dest: str | None = None,
    frames_shards: int = 1,
    log=print,
) -> list[dict]:
    """Export throughput of every format over a lake of ``shards`` x ``per_shard`` videos scaled up
    from the annotated tiny lake: the first export into an emptied destination, then a rerun with
    nothing new. ``dest``: a folder or s3:// prefix (default ``workdir/exports``); webdataset with
    frames exports the first ``frames_shards`` shards only (frames are decoded from the videos)."""
    import shutil

    from dynpose import export as ex

    base = export_base_lake(workdir, log=log)
    lake_url = str(workdir / f"lake-{shards}x{per_shard}")
    shutil.rmtree(lake_url, ignore_errors=True)
    t0 = time.perf_counter()
    videos = scale_lake(base, lake_url, shards, per_shard)
    log(f"scaled lake {lake_url}: {videos} videos in {shards} shards, {time.perf_counter() - t0:.1f} s")
    root = (dest or str(workdir / "exports")).rstrip("/")
    everything = ex.Selection(tiers=None, min_registered=None)
    few = ", ".join(f"'s{k:05d}'" for k in range(min(frames_shards, shards)))
    subset = ex.Selection(tiers=None, min_registered=None, where=f"shard IN ({few})")
    runs = [
        ("dynpose", "dynpose", False, everything),
        ("parquet", "parquet", False, everything),
        ("webdataset", "webdataset", False, everything),
        ("webdataset --with-frames", "webdataset", True, subset),
    ]
    rows = []
    for label, fmt, with_frames, selection in runs:
        target = f"{root}/{fmt}{'-frames' if with_frames else ''}"
        _clear_destination(target)
        first = ex.export(lake_url, target, selection, fmt=fmt, with_frames=with_frames)
        again = ex.export(lake_url, target, selection, fmt=fmt, with_frames=with_frames)
        rows.append(
            {
                "format": label,
                "videos": first.videos,
                "first export s": round(first.seconds, 2),
                "videos/s": round(first.videos_per_s, 1),
                "rerun s": round(again.seconds, 2),
                "MiB": round(first.bytes_written / 2**20, 1),
                "files": first.files,
                "rerun wrote": len(again.written),
            }
        )
        log(f"  {label}: {first.summary()}; rerun {again.seconds:.2f} s, {len(again.written)} file(s) written")
    return rows
