"""The annotation stages as the asset graph runs them: one video in, plain rows out.

Each stage decodes the video's sampled frames, calls the library (masks, tracking, SfM), and
turns the result into rows for the lake: a per-video summary row (with a status that names any
failure) and, for array products, LanceDB rows. Each video runs in a forked child
(``run_measured``), so its wall time and peak memory are its own and a crash of native code in
one video is a recorded failure, not a dead shard.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from dynpose.domain.camera import PoseResult
from dynpose.domain.catalog import open_source
from dynpose.domain.poses import pose_row
from dynpose.graph.isolation import run_measured
from dynpose.domain.video import SampledFrames, VideoError, sample_frames
from dynpose.domain.annotate.pipeline import AnnotateConfig, local_contrast, track_motion
from dynpose.domain.annotate.masks import COMPONENTS, MaskConfig, compute_dynamic_masks, decode_mask, encode_mask
from dynpose.domain.annotate.sfm import SfmConfig, failed_result, run_sfm
from dynpose.domain.annotate.tracking import TrackConfig, Tracklets, TrackWindow, track_grid

OURS = "ours"


def decode(video: dict, frames) -> SampledFrames:
    """The sampled frames of a video, per the ``sampled_frames`` settings (fps, max_side)."""
    with open_source(video["source_uri"]) as fh:
        return sample_frames(fh, fps=frames.fps, max_side=frames.max_side)


def _summary(video_id: str, status: str, message: str | None, seconds: float, peak: float, **values) -> dict:
    return {"video_id": video_id, "status": status, "message": message, "seconds": seconds, "peak_mib": peak, **values}


# -- dynamic masks ----------------------------------------------------------------------------

# The single-video pipeline's input checks, with its thresholds, so both paths name failures alike.
CHECKS = AnnotateConfig()


def frame_check(sampled: SampledFrames) -> tuple[str, str] | None:
    """too_few_frames / no_texture, as ``annotate_frames`` decides them."""
    if len(sampled) < CHECKS.min_frames:
        return "too_few_frames", f"{len(sampled)} sampled frame(s), need {CHECKS.min_frames}"
    contrast = float(np.median(local_contrast(sampled.frames)))
    if contrast < CHECKS.min_texture:
        return "no_texture", f"median local contrast {contrast:.2f} < {CHECKS.min_texture}"
    return None


def _usable_frames(video: dict, frames) -> tuple[SampledFrames | None, dict | None]:
    """The video's sampled frames, or the stage result that names why they cannot be used."""
    try:
        sampled = decode(video, frames)
    except VideoError as exc:
        return None, {"status": exc.status, "message": exc.message}
    bad = frame_check(sampled)
    if bad:
        return None, {"status": bad[0], "message": bad[1], "summary": {"n_frames": len(sampled)}, "rows": []}
    return sampled, None


def _masks(video: dict, frames, cfg: MaskConfig):
    sampled, failure = _usable_frames(video, frames)
    if failure:
        return failure
    masks = compute_dynamic_masks(sampled.frames, cfg)
    coverage = masks.coverage()
    rows, digest = [], hashlib.sha256()
    for i in range(len(sampled)):
        row = {
            "video_id": video["video_id"], "frame_index": i, "source_index": int(sampled.source_indices[i]),
            "timestamp_s": float(sampled.timestamps[i]), "mask_png": encode_mask(masks.union[i]),
            "coverage_union": float(coverage["union"][i]),
        }
        for name in COMPONENTS:
            row[f"{name}_png"] = encode_mask(masks.components[name][i])
            row[f"coverage_{name}"] = float(coverage[name][i])
        digest.update(row["mask_png"])
        rows.append(row)
    summary = {
        "n_frames": len(sampled), "detected_frames": len(masks.detected_frames),
        "mean_union_coverage": float(np.mean(coverage["union"])), "p90_union_coverage": float(np.quantile(coverage["union"], 0.9)),
        **{f"mean_{n}_coverage": float(np.mean(coverage[n])) for n in COMPONENTS},
        "stage_seconds": json.dumps(masks.timings), "content_sha": digest.hexdigest()[:16],
    }
    return {"status": "ok", "message": None, "summary": summary, "rows": rows}


def _isolated(stage, video: dict, frames, cfg) -> dict:
    """One video's array stage in a child process: its summary row (with timing) and its rows."""
    status, out, seconds, peak = run_measured(stage, video, frames, cfg)
    if status != "ok":
        return {"summary": _summary(video["video_id"], "failed", out, seconds, peak), "rows": []}
    return {"summary": _summary(video["video_id"], out["status"], out["message"], seconds, peak, **out.get("summary", {})), "rows": out.get("rows", [])}


def masks_for_video(video: dict, frames, cfg: MaskConfig) -> dict:
    return _isolated(_masks, video, frames, cfg)


def masks_from_rows(rows: list[dict], column: str = "mask_png") -> np.ndarray:
    """(N, H, W) bool masks of one video from its LanceDB rows."""
    rows = sorted(rows, key=lambda r: r["frame_index"])
    return np.stack([decode_mask(r[column]) for r in rows]) if rows else np.zeros((0, 1, 1), bool)


# -- tracklets ---------------------------------------------------------------------------------

def _tracks(video: dict, frames, cfg: TrackConfig):
    sampled, failure = _usable_frames(video, frames)
    if failure:
        return failure
    tracks = track_grid(sampled.frames, cfg)
    rows, digest = [], hashlib.sha256()
    for w, win in enumerate(tracks.windows):
        xy = np.ascontiguousarray(win.points, np.float32)
        vis = np.ascontiguousarray(win.visible, np.uint8)
        digest.update(xy.tobytes())
        rows.append({
            "video_id": video["video_id"], "window": w, "query_frame": int(win.query_frame),
            "frame_indices": [int(i) for i in win.frame_indices], "num_points": int(xy.shape[1]),
            "xy": xy.tobytes(), "visible": vis.tobytes(), "continues": win.continues.astype(np.int32).tobytes(),
        })
    survival = tracks.survival()
    summary = {
        "n_frames": tracks.num_frames, "width": tracks.width, "height": tracks.height, "windows": len(tracks.windows),
        "observations": tracks.num_observations,
        "mean_final_survival": float(np.nanmean(survival[:, -1])) if survival.size else float("nan"),
        "stage_seconds": json.dumps(tracks.timings), "content_sha": digest.hexdigest()[:16],
    }
    return {"status": "ok", "message": None, "summary": summary, "rows": rows}


def tracks_for_video(video: dict, frames, cfg: TrackConfig) -> dict:
    return _isolated(_tracks, video, frames, cfg)


def tracklets_from_rows(rows: list[dict], num_frames: int, width: int, height: int) -> Tracklets:
    windows = []
    for r in sorted(rows, key=lambda r: r["window"]):
        t, p = len(r["frame_indices"]), r["num_points"]
        windows.append(TrackWindow(
            query_frame=r["query_frame"], frame_indices=np.asarray(r["frame_indices"]),
            points=np.frombuffer(r["xy"], np.float32).reshape(t, p, 2),
            visible=np.frombuffer(r["visible"], np.uint8).reshape(t, p).astype(bool),
            # rows written before continued tracks existed have none
            continues=np.frombuffer(r["continues"], np.int32).astype(np.int64) if r.get("continues") is not None else None,
        ))
    return Tracklets(windows, num_frames, width, height)


# -- camera poses --------------------------------------------------------------------------------

def _poses(job: dict, cfg: SfmConfig) -> tuple[str, str | None, PoseResult]:
    """(status, message, poses): static_camera before SfM, then sfm_failed / low_registration / ok."""
    w, h, ts = job["width"], job["height"], np.asarray(job["timestamps"])
    tracks = tracklets_from_rows(job["track_rows"], job["n_frames"], w, h)
    masks = masks_from_rows(job["mask_rows"]) if job["mask_rows"] else None
    motion = track_motion(tracks, masks)
    if motion < CHECKS.static_motion * float(np.hypot(w, h)):
        msg = f"p90 static track motion {motion:.1f} px"
        return "static_camera", msg, failed_result(ts, w, h, msg, cfg)
    poses = run_sfm(tracks, masks, ts, cfg)
    if not poses.registered.any():
        return "sfm_failed", poses.extra.get("reason", "nothing registered"), poses
    if poses.registered_ratio < cfg.min_registered:
        return "low_registration", f"{int(poses.registered.sum())}/{len(ts)} frames registered", poses
    return "ok", None, poses


def poses_for_video(job: dict, cfg: SfmConfig) -> dict:
    """``job``: video_id, timestamps, source indices, tracklet and mask rows, upstream statuses."""
    vid, ts = job["video_id"], np.asarray(job["timestamps"])
    failed = next((s for s in job["upstream"] if s["status"] != "ok"), None)
    if failed is not None:  # an upstream failure names this video's status
        result = failed_result(ts, job["width"] or 1, job["height"] or 1, failed["message"] or failed["status"])
        return pose_row(vid, OURS, result, job["source_indices"], status=failed["status"], message=failed["message"])
    status, value, seconds, peak = run_measured(_poses, job, cfg)
    stage_seconds = {**job.get("upstream_seconds", {}), "sfm": seconds}
    total = sum(stage_seconds.values())
    peak = max([peak, *job.get("upstream_peaks", [])])
    if status != "ok":
        result = failed_result(ts, job["width"], job["height"], value)
        return pose_row(vid, OURS, result, job["source_indices"], status="failed", message=value, seconds=total, peak_mib=peak, stage_seconds=stage_seconds)
    pose_status, message, result = value
    return pose_row(
        vid, OURS, result, job["source_indices"], status=pose_status, message=message,
        seconds=total, peak_mib=peak, stage_seconds=stage_seconds,
    )


__all__ = [
    "OURS", "decode", "masks_for_video", "masks_from_rows", "tracks_for_video", "tracklets_from_rows", "poses_for_video",
]
