"""Evaluation products: baselines on the same videos, pose / reprojection / mask / filter benchmarks,
the benchmark report and dataset statistics (aggregates over every shard).

Per-shard benchmarks cover the videos that carry ground truth (synthetic suites); the aggregates
turn them into the paper-style tables and plots, stored in the lake and shown as asset metadata.
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa

from dynpose.domain.annotate.masks import COMPONENTS, VLM, detection_frames
from dynpose.domain.camera import PoseResult
from dynpose.domain.filters.cascade import FILTERS
from dynpose.domain.poses import POSES_SCHEMA, pose_from_row, pose_row, poses_table
from dynpose.domain.video import VideoError
from dynpose.evaluation.baselines import failed_result, get_method
from dynpose.evaluation.filters import Labelled, benchmark_rows
from dynpose.evaluation.ground_truth import GroundTruth, load_ground_truth, reprojection_error
from dynpose.evaluation.metrics.trajectory import evaluate_trajectory
from dynpose.graph.isolation import run_measured
from dynpose.graph.steps import stages
from dynpose.graph.steps.annotations import _group
from dynpose.graph.steps.base import Product, StepContext

POSE_BENCH_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("method", pa.string()),
        ("status", pa.string()),
        ("ate", pa.float64()),
        ("rpe_t", pa.float64()),
        ("rpe_r", pa.float64()),
        ("registered_ratio", pa.float64()),
        ("success", pa.bool_()),
        ("filled", pa.string()),
        ("n_frames", pa.int32()),
        ("seconds", pa.float64()),
        ("peak_mib", pa.float64()),
        ("category", pa.string()),
        ("trajectory", pa.string()),
        ("clip", pa.string()),  # the synthetic clip's name, e.g. 000_room_handheld_walk
    ]
)
REPROJ_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("method", pa.string()),
        ("reprojection_px", pa.float64()),
        ("correspondences", pa.int64()),
    ]
)
DETECTED = ("semantic", "interaction", "motion", VLM)  # mask components computed on detection frames only
MASK_BENCH_SCHEMA = pa.schema(
    [("video_id", pa.string())]
    + [(f"iou_{c}", pa.float64()) for c in ("union", *COMPONENTS, VLM, "union_no_vlm")]  # the last two: with a VLM
    + [("gt_coverage", pa.float64()), ("pred_coverage", pa.float64()), ("n_frames", pa.int32())]
)
FILTER_BENCH_SCHEMA = pa.schema(
    [
        ("name", pa.string()),
        ("kind", pa.string()),  # alone | cumulative | cascade
        ("average_precision", pa.float64()),
        ("precision_at_recall_40", pa.float64()),
        ("recall", pa.list_(pa.float64())),
        ("precision", pa.list_(pa.float64())),
        ("n_videos", pa.int64()),
        ("n_positive", pa.int64()),
        ("seconds_per_video", pa.float64()),
        ("precision_kept", pa.float64()),
        ("recall_kept", pa.float64()),
        ("n_kept", pa.int64()),
        ("wrong_by_category", pa.string()),
        ("stage_left_counts", pa.string()),  # JSON {category or stage: videos}
    ]
)


def _report_schema() -> pa.Schema:
    from dynpose.evaluation.report import COLUMNS

    fields = [(_column_name(c), pa.string() if c == "method" else pa.float64()) for c in COLUMNS]
    return pa.schema(fields + [("table", pa.string())])


def _gt_videos(ctx: StepContext) -> list[dict]:
    return [v for v in ctx.ok_videos() if v.get("ground_truth_uri")]


# -- baselines ------------------------------------------------------------------------------------


def baselines_for_video(job: dict, methods: tuple[str, ...], frames, options: dict | None = None) -> list[dict]:
    """Every baseline on one video's sampled frames (the frames ours sees), each in its own child."""
    video, vid = job["video"], job["video"]["video_id"]
    try:
        sampled = stages.decode(video, frames)
    except VideoError as exc:
        return [pose_row(vid, m, empty_result(), [], status=exc.status, message=exc.message) for m in methods]
    masks = stages.masks_from_rows(job["mask_rows"]) if job["mask_rows"] else None
    rows = []
    for name in methods:
        status, value, seconds, peak = run_measured(
            get_method(name).run, sampled, masks, **(options or {}).get(name, {})
        )
        if status != "ok":  # the method crashed: a failure of this method on this video
            value = failed_result(sampled, value)
        reason = value.extra.get("reason") if not np.any(value.registered) else None
        rows.append(
            pose_row(
                vid,
                name,
                value,
                sampled.source_indices,
                status="failed" if reason else "ok",
                message=reason,
                seconds=seconds,
                peak_mib=peak,
            )
        )
    return rows


def empty_result() -> PoseResult:
    """No frame decoded: zero frames, the placeholder camera of a 1 x 1 image."""
    return PoseResult.unregistered(np.zeros(0), 1, 1, "no frames")


def compute_baseline_poses(ctx: StepContext) -> pa.Table:
    videos = _gt_videos(ctx) if ctx.settings.only_with_ground_truth else ctx.ok_videos()
    mask_rows = _group(ctx.lake.read_lance_shard("dynamic_masks", ctx.shard)) if videos else {}
    jobs = [{"video": v, "mask_rows": mask_rows.get(v["video_id"], [])} for v in videos]
    fn = functools.partial(
        baselines_for_video,
        methods=tuple(ctx.settings.methods),
        frames=ctx.all_settings.sampled_frames,
        options=ctx.settings.options,
    )
    return poses_table([r for rows in ctx.executor.map(fn, jobs, ctx.progress) for r in rows])


# -- benchmarks against ground truth ------------------------------------------------------------------


def _all_pose_rows(ctx: StepContext) -> list[dict]:
    return ctx.input("camera_poses").to_pylist() + ctx.input("baseline_poses").to_pylist()


def _ground_truths(ctx: StepContext) -> dict[str, GroundTruth]:
    return {v["video_id"]: load_ground_truth(v["ground_truth_uri"]) for v in _gt_videos(ctx)}


def compute_pose_benchmark(ctx: StepContext) -> pa.Table:
    gts, out = _ground_truths(ctx), []
    for row in _all_pose_rows(ctx):
        gt = gts.get(row["video_id"])
        if gt is None or not row["n_frames"]:
            continue
        m = evaluate_trajectory(pose_from_row(row), gt.poses, fill_seed=ctx.settings.fill_seed)
        out.append(
            {
                "video_id": row["video_id"],
                "method": row["method"],
                "status": row["status"],
                **{k: m[k] for k in ("ate", "rpe_t", "rpe_r", "registered_ratio", "success", "n_frames")},
                "filled": m.get("filled") or None,
                "seconds": row["seconds"],
                "peak_mib": row["peak_mib"],
                "category": gt.meta.get("category"),
                "trajectory": gt.meta.get("trajectory"),
                "clip": gt.meta.get("name"),
            }
        )
    return pa.Table.from_pylist(out, schema=POSE_BENCH_SCHEMA)


def compute_reprojection_benchmark(ctx: StepContext) -> pa.Table:
    gts, out = _ground_truths(ctx), []
    for row in _all_pose_rows(ctx):
        gt = gts.get(row["video_id"])
        if gt is None or not row["n_frames"]:
            continue
        err, n = reprojection_error(pose_from_row(row), row["frame_index"], gt)
        out.append({"video_id": row["video_id"], "method": row["method"], "reprojection_px": err, "correspondences": n})
    return pa.Table.from_pylist(out, schema=REPROJ_SCHEMA)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else float("nan")


def compute_mask_benchmark(ctx: StepContext) -> pa.Table:
    import cv2

    gts = _ground_truths(ctx)
    rows = _group(ctx.lake.read_lance_shard("dynamic_masks", ctx.shard)) if gts else {}
    out = []
    for vid, gt in gts.items():
        video_rows = sorted(rows.get(vid, []), key=lambda r: r["frame_index"])
        if not video_rows:
            continue
        truth = gt.masks([r["source_index"] for r in video_rows])
        h, w = truth.shape[1:]
        row = {"video_id": vid, "n_frames": len(video_rows), "gt_coverage": float(truth.mean())}
        columns = [("union", "mask_png")] + [(c, f"{c}_png") for c in COMPONENTS]
        # with DynaPo's component: it alone, and the union without it (the ablation of one run)
        columns += [(c, f"{c}_png") for c in (VLM, "union_no_vlm") if video_rows[0].get(f"{c}_png") is not None]
        detected = detection_frames(len(video_rows), ctx.all_settings.dynamic_masks)
        for comp, column in columns:
            pred = stages.masks_from_rows(video_rows, column)
            if comp in DETECTED:  # set on detection frames only: scored there
                pred, gt_frames = pred[detected], truth[detected]
            else:
                gt_frames = truth
            if pred.shape[1:] != (h, w):  # masks are at the sampled resolution; compare at ground truth's
                pred = np.stack(
                    [cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0 for m in pred]
                )
            row[f"iou_{comp}"] = _iou(pred, gt_frames)
            if comp == "union":
                row["pred_coverage"] = float(pred.mean())
        out.append(row)
    return pa.Table.from_pylist(out, schema=MASK_BENCH_SCHEMA)


def compute_filter_benchmark(ctx: StepContext) -> pa.Table:
    """Table 5: every filter alone, the cumulative ablation and the cascade, against the labels."""
    videos = [
        Labelled(r["video_id"], int(r["label_suitable"]), r["label_category"] or "unlabelled")
        for r in _rows(ctx, "clip_catalog")
        if r["label_suitable"] is not None and r["status"] == "ok"
    ]
    scores: dict[str, dict] = {}
    seconds: dict[str, dict] = {}
    for name in FILTERS:
        for r in _rows(ctx, f"filter_{name}"):
            scores.setdefault(r["video_id"], {})[name] = r["score"]
            seconds.setdefault(name, {})[r["video_id"]] = r["seconds"]
    decisions = {r["video_id"]: r for r in _rows(ctx, "filter_decisions")}
    return pa.Table.from_pylist(benchmark_rows(videos, scores, seconds, decisions), schema=FILTER_BENCH_SCHEMA)


# -- aggregates: report and statistics ---------------------------------------------------------------


def _rows(ctx: StepContext, product: str) -> list[dict]:
    table = ctx.input(product)
    return table.to_pylist() if table is not None else []


def _report_folder(ctx: StepContext, name: str) -> str:
    return ctx.lake.path("reports", name)


def _publish(ctx: StepContext, name: str, markdown: str, plots: dict[str, bytes], doc: str) -> None:
    folder = _report_folder(ctx, name)
    for fname, png in plots.items():
        ctx.lake.put_bytes(f"{folder}/{fname}", png)
    ctx.lake.put_bytes(f"{folder}/{doc}", markdown.encode())


def compute_benchmark_report(ctx: StepContext) -> pa.Table:
    from dynpose.evaluation.report import build_benchmark_report

    poses = _rows(ctx, "pose_benchmark")
    report = build_benchmark_report(
        poses,
        _rows(ctx, "reprojection_benchmark"),
        _rows(ctx, "mask_benchmark"),
        _rows(ctx, "filter_benchmark"),
        examples=_trajectory_examples(ctx, sorted({r["video_id"] for r in poses})[:3]),
    )
    _publish(ctx, "benchmark", report.markdown, report.plots, "report.md")
    rows = [dict(r, table="all videos (failures filled)") for r in report.table]
    rows += [dict(r, table="videos where all methods succeed") for r in report.table_all_succeed]
    return pa.Table.from_pylist([{_column_name(k): v for k, v in r.items()} for r in rows], schema=REPORT_SCHEMA)


def _column_name(title: str) -> str:
    """SQL-friendly column names for the report's titles ("% < 5 px" -> "pct_lt_5_px")."""
    return title.replace("%", "pct").replace("<", "lt").replace("-", "_").replace(" ", "_").replace("__", "_").lower()


def _trajectory_examples(ctx: StepContext, video_ids: list[str]) -> list[dict]:
    """A few videos' trajectories of every method with their ground truth, for the report's plots."""
    if not video_ids:
        return []
    catalog = {r["video_id"]: r for r in _rows(ctx, "clip_catalog")}
    preds: dict[str, dict] = {v: {} for v in video_ids}
    for product in ("camera_poses", "baseline_poses"):
        for r in _rows(ctx, product):
            if r["video_id"] in preds and r["status"] == "ok":
                preds[r["video_id"]][r["method"]] = pose_from_row(r)
    return [
        {"video_id": v, "gt": load_ground_truth(catalog[v]["ground_truth_uri"]).poses, "preds": preds[v]}
        for v in video_ids
        if catalog.get(v, {}).get("ground_truth_uri") and preds[v]
    ]


def compute_dataset_statistics(ctx: StepContext) -> pa.Table:
    from dynpose.evaluation.statistics import dataset_statistics

    stats = dataset_statistics(_rows(ctx, "clip_catalog"), _rows(ctx, "camera_poses"), _rows(ctx, "dynamic_masks"))
    _publish(ctx, "dataset_statistics", stats.markdown, stats.plots, "statistics.md")
    return (
        pa.Table.from_pylist(stats.per_video) if stats.per_video else pa.table({"video_id": pa.array([], pa.string())})
    )


def _report_metadata(name: str, doc: str):
    def metadata(lake, _shard) -> dict:
        folder = lake.path("reports", name)
        out = {"report": ("md", lake.get_bytes(f"{folder}/{doc}").decode())}
        for fname in lake.listdir(folder):
            if fname.endswith(".png"):
                out[fname[:-4]] = ("png", lake.get_bytes(f"{folder}/{fname}"))
        return out

    return metadata


def _filter_metadata(lake, shard) -> dict:
    """Table 5 and its PR curves (each filter alone and the cascade) as the asset's metadata."""
    from dynpose.evaluation.markdown import markdown_table
    from dynpose.evaluation.report import filter_table, plot_pr_rows

    rows = lake.read_table("filter_benchmark", shard).to_pylist()
    if not rows:
        return {"table": ("md", "_No labelled videos of both classes yet._")}
    return {
        "table": ("md", markdown_table(filter_table(rows))),
        "pr_curves": ("png", plot_pr_rows([r for r in rows if r["kind"] != "cumulative"])),
    }


REPORT_SCHEMA = _report_schema()

PRODUCTS = [
    Product(
        "baseline_poses",
        "1",
        ("sampled_frames", "dynamic_masks"),
        compute_baseline_poses,
        "Poses from the baseline methods (COLMAP, COLMAP+Mask, TracksTo4D with and without BA, identity) on the "
        "videos with ground truth, same frames as ours.",
        "eval",
        schema=POSES_SCHEMA,
        checks=("valid_poses",),
    ),
    Product(
        "pose_benchmark",
        "2",
        ("camera_poses", "baseline_poses"),
        compute_pose_benchmark,
        "Per video and method: ATE, RPE-t, RPE-r (evo, Sim(3), delta 1), registered ratio, success (>= 80%).",
        "eval",
        schema=POSE_BENCH_SCHEMA,
    ),
    Product(
        "reprojection_benchmark",
        "1",
        ("camera_poses", "baseline_poses"),
        compute_reprojection_benchmark,
        "Per video and method: mean sqrt Sampson error of ground-truth correspondences, 720p-normalised pixels.",
        "eval",
        schema=REPROJ_SCHEMA,
    ),
    Product(
        "mask_benchmark",
        "2",
        ("dynamic_masks",),
        compute_mask_benchmark,
        "Per video: IoU of the dynamic masks (union and each component; the detected components on detection "
        "frames only) against ground-truth masks.",
        "eval",
        uses=("dynamic_masks",),  # which frames were detection frames
        schema=MASK_BENCH_SCHEMA,
        checks=("unique_video_ids",),
    ),
    Product(
        "filter_benchmark",
        "2",
        ("clip_catalog", "filter_decisions"),
        compute_filter_benchmark,
        "Table 5: VOC AP and precision at recall >= 0.40 for each filter alone, the cumulative ablation and "
        "the cascade, against the labels; PR curves in the metadata.",
        "eval",
        aggregate=True,
        metadata=_filter_metadata,
        schema=FILTER_BENCH_SCHEMA,
    ),
    Product(
        "benchmark_report",
        "2",
        (
            "pose_benchmark",
            "reprojection_benchmark",
            "mask_benchmark",
            "filter_benchmark",
            "camera_poses",
            "baseline_poses",
        ),
        compute_benchmark_report,
        "Paper-style comparison tables (all videos with failures filled; videos where all methods succeed) and plots.",
        "eval",
        aggregate=True,
        metadata=_report_metadata("benchmark", "report.md"),
        schema=REPORT_SCHEMA,
    ),
    Product(
        "dataset_statistics",
        "1",
        ("clip_catalog", "camera_poses", "dynamic_masks"),
        compute_dataset_statistics,
        "Video length, dynamic mask area and camera rotation statistics (paper figures 6 and 17).",
        "eval",
        aggregate=True,
        metadata=_report_metadata("dataset_statistics", "statistics.md"),
    ),
]
