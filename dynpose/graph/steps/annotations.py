"""Annotation products: dynamic masks, tracklets (LanceDB + per-video summaries), camera poses, quality."""

from __future__ import annotations

import functools
from collections import defaultdict

import numpy as np
import pyarrow as pa

from dynpose.domain.annotate.quality import assess
from dynpose.domain.camera import PoseResult
from dynpose.domain.poses import POSES_SCHEMA, pose_from_row, pose_row, poses_table
from dynpose.domain.status import Status
from dynpose.graph.executors import InProcessExecutor
from dynpose.graph.steps import stages
from dynpose.graph.steps.base import Product, StepContext
from dynpose.storage.vlm_cache import VlmCache

MASK_SUMMARY_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("status", pa.string()),
        ("message", pa.string()),
        ("n_frames", pa.int32()),
        ("detected_frames", pa.int32()),
        ("mean_union_coverage", pa.float64()),
        ("p90_union_coverage", pa.float64()),
        ("mean_semantic_coverage", pa.float64()),
        ("mean_interaction_coverage", pa.float64()),
        ("mean_motion_coverage", pa.float64()),
        ("mean_propagated_coverage", pa.float64()),
        # DynaPo's VLM component: skipped without an endpoint; a VLM fault never fails the video
        ("mean_vlm_coverage", pa.float64()),
        ("vlm_status", pa.string()),
        ("vlm_message", pa.string()),
        ("vlm_objects", pa.int32()),
        ("vlm_tokens_in", pa.int64()),
        ("vlm_tokens_out", pa.int64()),
        ("vlm_cost_usd", pa.float64()),
        ("vlm_cached", pa.bool_()),
        ("seconds", pa.float64()),
        ("peak_mib", pa.float64()),
        ("stage_seconds", pa.string()),
        ("content_sha", pa.string()),
    ]
)
TRACK_SUMMARY_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("status", pa.string()),
        ("message", pa.string()),
        ("n_frames", pa.int32()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("windows", pa.int32()),
        ("observations", pa.int64()),
        ("mean_final_survival", pa.float64()),
        ("seconds", pa.float64()),
        ("peak_mib", pa.float64()),
        ("stage_seconds", pa.string()),
        ("content_sha", pa.string()),
    ]
)


def _array_product(ctx: StepContext, table_name: str, per_video, schema: pa.Schema, jobs=None) -> pa.Table:
    """Run a per-video stage (on ``jobs``, default the annotated videos), rewrite this shard of its
    LanceDB table, return the summaries."""
    results = ctx.executor.map(per_video, ctx.annotated_videos() if jobs is None else jobs, ctx.progress)
    results += [
        stages.StageResult({"video_id": vid, "status": Status.filtered_out, "message": why})
        for vid, why in ctx.filtered_out()
    ]
    rows = [dict(r, shard=ctx.shard) for res in results for r in res.rows]
    # Every row gets every column (a video without the VLM's component has none of its columns).
    columns = list(dict.fromkeys(k for r in rows for k in r))
    rows = [{k: r.get(k) for k in columns} for r in rows]
    # Arrays first, summaries (the product's Parquet) second: a summary always has its arrays.
    ctx.lake.replace_lance_shard(table_name, ctx.shard, pa.Table.from_pylist(rows) if rows else pa.table({}))
    return pa.Table.from_pylist([res.summary for res in results], schema=schema)


def compute_dynamic_masks(ctx: StepContext) -> pa.Table:
    frames, cfg, checks = ctx.all_settings.sampled_frames, ctx.settings, ctx.all_settings.annotation_checks
    videos, endpoint = ctx.annotated_videos(), ctx.all_settings.vlm
    replies = {}
    if cfg.vlm and endpoint.configured and videos:
        # DynaPo: the objects first, asked from this process on the endpoint's threads (as filter_vlm)
        ask = functools.partial(
            stages.vlm_objects, frames=frames, cfg=cfg, checks=checks, endpoint=endpoint, cache=VlmCache(ctx.lake)
        )
        answers = InProcessExecutor(max(1, endpoint.concurrency)).map(ask, videos, ctx.progress)
        replies = {v["video_id"]: r for v, r in zip(videos, answers)}
    jobs = [{"video": v, "reply": replies.get(v["video_id"])} for v in videos]
    fn = functools.partial(stages.masks_for_video, frames=frames, cfg=cfg, checks=checks)
    return _array_product(ctx, "dynamic_masks", fn, MASK_SUMMARY_SCHEMA, jobs)


def compute_tracklets(ctx: StepContext) -> pa.Table:
    fn = functools.partial(
        stages.tracks_for_video,
        frames=ctx.all_settings.sampled_frames,
        cfg=ctx.settings,
        checks=ctx.all_settings.annotation_checks,
    )
    return _array_product(ctx, "tracklets", fn, TRACK_SUMMARY_SCHEMA)


def _group(table: pa.Table | None, drop=("shard",)) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    if table is not None:
        for r in table.drop_columns([c for c in drop if c in table.column_names]).to_pylist():
            out[r["video_id"]].append(r)
    return out


def _upstream(summary: dict | None) -> stages.Upstream:
    if summary is None:
        return stages.Upstream("missing", "no row upstream")
    peak = summary.get("peak_mib")
    return stages.Upstream(
        summary["status"], summary.get("message"), summary.get("seconds") or 0.0, float("nan") if peak is None else peak
    )


def pose_jobs(ctx: StepContext) -> list[stages.PoseJob]:
    """Everything SfM needs per video: frame times, tracklets, masks and the upstream statuses."""
    frames = _group(ctx.input("sampled_frames"))
    mask_summary = {r["video_id"]: r for r in ctx.input("dynamic_masks").to_pylist()}
    track_summary = {r["video_id"]: r for r in ctx.input("tracklets").to_pylist()}
    mask_rows = _group(ctx.lake.read_lance_shard("dynamic_masks", ctx.shard))
    track_rows = _group(ctx.lake.read_lance_shard("tracklets", ctx.shard))
    cfg = ctx.settings
    focal, focal_table = {}, None
    if cfg.select != "first" and "sweep" in cfg.focal_inits:
        focal_table = ctx.input("filter_focal")
    if focal_table is not None:
        focal = {r["video_id"]: r.get("focal_clip_px") for r in focal_table.to_pylist()}
    jobs = []
    for video in ctx.annotated_videos():
        vid = video["video_id"]
        fr = sorted(frames.get(vid, []), key=lambda r: r["frame_index"])
        ts = track_summary.get(vid) or {}
        w, h = ts.get("width") or 0, ts.get("height") or 0
        hint = focal.get(vid)  # 720p pixels (short side 720) -> the annotated size
        jobs.append(
            stages.PoseJob(
                video_id=vid,
                timestamps=[r["timestamp_s"] for r in fr],
                source_indices=[r["source_index"] for r in fr],
                width=ts.get("width") or 0,
                height=ts.get("height") or 0,
                track_rows=track_rows.get(vid, []),
                mask_rows=mask_rows.get(vid, []),
                upstream={"masks": _upstream(mask_summary.get(vid)), "tracking": _upstream(track_summary.get(vid))},
                focal_hint=hint * min(w, h) / 720.0 if hint is not None and min(w, h) else None,
                video=video if cfg.bridge else None,
                frames=ctx.all_settings.sampled_frames,
            )
        )
    return jobs


def compute_camera_poses(ctx: StepContext) -> pa.Table:
    fn = functools.partial(stages.poses_for_video, cfg=ctx.settings, checks=ctx.all_settings.annotation_checks)
    rows = ctx.executor.map(fn, pose_jobs(ctx), ctx.progress)
    rows += [
        pose_row(
            vid,
            stages.OURS,
            PoseResult.unregistered(np.zeros(0), 1, 1, why),
            [],
            status=Status.filtered_out,
            message=why,
        )
        for vid, why in ctx.filtered_out()
    ]
    return poses_table(rows)


QUALITY_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("status", pa.string()),
        ("registered_ratio", pa.float64()),
        ("reprojection_error", pa.float64()),
        ("registered", pa.bool_()),
        ("focal_plausible", pa.bool_()),
        ("tier", pa.string()),
        ("self_consistency", pa.float64()),  # InterPose score of the kept pose hypothesis (NaN: not scored)
    ]
)


def compute_pose_quality(ctx: StepContext) -> pa.Table:
    rows = []
    for r in ctx.input("camera_poses").to_pylist():
        q = assess(pose_from_row(r), ctx.all_settings.annotation_checks.min_registered, ctx.settings)
        tier = q.tier if r["status"] == "ok" else "failed"
        rows.append({"video_id": r["video_id"], "status": r["status"], **q.to_dict(), "tier": tier})
    return pa.Table.from_pylist(rows, schema=QUALITY_SCHEMA)


PRODUCTS = [
    Product(
        "dynamic_masks",
        "3",
        ("sampled_frames", "filter_decisions"),
        compute_dynamic_masks,
        "Per-video mask summary; per-frame union and component masks (PNG) with coverage in LanceDB table "
        "dynamic_masks; with a VLM endpoint, DynaPo's vlm component (the objects it named, segmented).",
        "annotations",
        uses=("annotation_checks", "annotation", "vlm"),
        schema=MASK_SUMMARY_SCHEMA,
        checks=("unique_video_ids",),
    ),
    Product(
        "tracklets",
        "3",
        ("sampled_frames", "filter_decisions"),
        compute_tracklets,
        "Per-video tracking summary; grid tracks per query window (xy float32, visibility, continued points) in "
        "LanceDB table tracklets.",
        "annotations",
        uses=("annotation_checks", "annotation"),
        schema=TRACK_SUMMARY_SCHEMA,
        checks=("unique_video_ids",),
    ),
    Product(
        "camera_poses",
        "4",
        ("sampled_frames", "filter_decisions", "filter_focal", "dynamic_masks", "tracklets"),
        compute_camera_poses,
        "Bundle-adjusted world-to-camera poses per sampled frame, registered flags, shared intrinsics, "
        "reprojection error; the kept hypothesis's self-consistency and focal initialisation, per-point "
        "motion levels (with camera_poses.motion_level).",
        "annotations",
        uses=("annotation_checks", "annotation"),
        schema=POSES_SCHEMA,
        checks=("unique_video_ids", "valid_poses"),
    ),
    Product(
        "pose_quality",
        "3",
        ("camera_poses",),
        compute_pose_quality,
        "Registered ratio, reprojection tier and the per-video tier label users filter on.",
        "annotations",
        uses=("annotation_checks",),
        schema=QUALITY_SCHEMA,
        checks=("unique_video_ids",),
    ),
]
