"""The annotation stages as the asset graph runs them: one video in, plain rows out.

Each stage decodes the video's sampled frames, calls the library (masks, tracking, SfM), and
turns the result into rows for the lake: a per-video summary row (with a status that names any
failure) and, for array products, LanceDB rows. Statuses come from the one decision path,
:mod:`dynpose.domain.annotate.decisions`, which ``dynpose annotate`` also takes. Each video runs
in a forked child (``run_measured``), so its wall time and peak memory are its own and a crash of
native code in one video is a recorded failure, not a dead shard.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from dynpose.domain.annotate import masks_vlm as mv
from dynpose.domain.annotate.decisions import (
    AnnotationChecks,
    Verdict,
    frames_verdict,
    motion_verdict,
    poses_verdict,
    track_motion,
)
from dynpose.domain.annotate.masks import (
    COMPONENTS,
    VLM,
    MaskConfig,
    compute_dynamic_masks,
    decode_mask,
    detection_frames,
    encode_mask,
)
from dynpose.domain.annotate.sfm import SfmConfig, failed_result, run_sfm
from dynpose.domain.annotate.tracking import TrackConfig, Tracklets, TrackWindow, track_grid
from dynpose.domain.camera import PoseResult
from dynpose.domain.catalog import FrameSettings, open_source
from dynpose.domain.poses import pose_row
from dynpose.domain.status import Status
from dynpose.domain.video import SampledFrames, VideoError, sample_frames
from dynpose.domain.vlm_client import Reply
from dynpose.graph.isolation import run_measured

OURS = "ours"


def decode(video: dict, frames) -> SampledFrames:
    """The sampled frames of a video, per the ``sampled_frames`` settings (fps, max_side)."""
    with open_source(video["source_uri"]) as fh:
        return sample_frames(fh, fps=frames.fps, max_side=frames.max_side)


@dataclass
class StageResult:
    """One video's result of an array stage: its row of the product and its LanceDB rows."""

    summary: dict
    rows: list[dict] = field(default_factory=list)


def _summary(video_id: str, status: str, message: str | None, seconds: float, peak: float, **values) -> dict:
    return {"video_id": video_id, "status": status, "message": message, "seconds": seconds, "peak_mib": peak, **values}


def _usable_frames(video: dict, frames: FrameSettings, checks: AnnotationChecks) -> tuple[SampledFrames | None, tuple]:
    """The video's sampled frames, or (verdict, summary values, rows) that say why they cannot be used."""
    try:
        sampled = decode(video, frames)
    except VideoError as exc:
        return None, (Verdict(Status(exc.status), exc.message), {}, [])
    verdict, _ = frames_verdict(sampled.frames, checks)
    if not verdict.ok:
        return None, (verdict, {"n_frames": len(sampled)}, [])
    return sampled, ()


# -- dynamic masks ----------------------------------------------------------------------------


def mask_keyframes(
    video: dict, frames: FrameSettings, cfg: MaskConfig, checks: AnnotationChecks
) -> mv.KeyFrames | None:
    """The key frames the VLM is shown (DynaPo component), or None when the video cannot be used
    (the mask stage then records why)."""
    sampled, failure = _usable_frames(video, frames, checks)
    if failure:
        return None
    picks = mv.keyframes(detection_frames(len(sampled), cfg), cfg.vlm_keyframes)
    return mv.key_frames(sampled.frames, picks, sampled.source_indices, sampled.timestamps, cfg.vlm_frame_side)


def vlm_objects(
    video: dict, frames: FrameSettings, cfg: MaskConfig, checks: AnnotationChecks, endpoint, cache
) -> Reply:
    """The VLM's objects for one video's masks: key frames from a child, the answer from the cache
    or the endpoint (asked from this process, within the endpoint's limits). Never raises: a fault
    is the reply's status, and the masks are then made without the component."""
    status, keys, _seconds, _peak = run_measured(mask_keyframes, video, frames, cfg, checks)
    if status != "ok":
        return Reply(Status.failed, message=f"key frames: {keys}")
    if keys is None:  # the video itself is unusable: the mask stage says why
        return Reply(Status.skipped, message="no usable frames")
    return mv.ask_objects(keys, video["video_id"], endpoint, cfg.vlm_prompt_version, cache)


def _vlm_values(reply: Reply | None, masks=None, coverage=None) -> dict:
    """The summary's vlm_* columns; ``reply`` None: no endpoint (or the component is off)."""
    if reply is None:
        return {"vlm_status": Status.skipped, "vlm_message": "no VLM endpoint configured, or dynamic_masks.vlm off"}
    objects = reply.answer if reply.status == Status.ok else None
    return {
        "vlm_status": reply.status,
        "vlm_message": reply.message,
        "vlm_tokens_in": reply.tokens_in,
        "vlm_tokens_out": reply.tokens_out,
        "vlm_cost_usd": reply.cost_usd,
        "vlm_cached": reply.cached,
        "vlm_objects": sum(len(o) for o in objects.values()) if objects is not None else None,
        "mean_vlm_coverage": float(np.mean(coverage[VLM])) if coverage is not None and VLM in coverage else None,
    }


def _masks(video: dict, frames: FrameSettings, cfg: MaskConfig, checks: AnnotationChecks, reply=None) -> tuple:
    sampled, failure = _usable_frames(video, frames, checks)
    if failure:
        verdict, values, rows = failure
        return verdict, {**values, **_vlm_values(reply)}, rows
    objects = reply.answer if reply is not None and reply.status == Status.ok else None
    masks = compute_dynamic_masks(sampled.frames, cfg, objects)
    coverage = masks.coverage()
    components = COMPONENTS + ((VLM,) if objects is not None else ())
    rows, digest = [], hashlib.sha256()
    for i in range(len(sampled)):
        row = {
            "video_id": video["video_id"],
            "frame_index": i,
            "source_index": int(sampled.source_indices[i]),
            "timestamp_s": float(sampled.timestamps[i]),
            "mask_png": encode_mask(masks.union[i]),
            "coverage_union": float(coverage["union"][i]),
        }
        for name in components:
            row[f"{name}_png"] = encode_mask(masks.components[name][i])
            row[f"coverage_{name}"] = float(coverage[name][i])
        if masks.union_no_vlm is not None:  # the ablation, for the mask benchmark
            row["union_no_vlm_png"] = encode_mask(masks.union_no_vlm[i])
        digest.update(row["mask_png"])
        rows.append(row)
    summary = {
        "n_frames": len(sampled),
        "detected_frames": len(masks.detected_frames),
        "mean_union_coverage": float(np.mean(coverage["union"])),
        "p90_union_coverage": float(np.quantile(coverage["union"], 0.9)),
        **{f"mean_{n}_coverage": float(np.mean(coverage[n])) for n in COMPONENTS},
        **_vlm_values(reply, masks, coverage),
        "stage_seconds": json.dumps(masks.timings),
        "content_sha": digest.hexdigest()[:16],
    }
    return Verdict(Status.ok), summary, rows


def _isolated(stage, video: dict, frames: FrameSettings, cfg, checks: AnnotationChecks, **extra) -> StageResult:
    """One video's array stage in a child process: its summary row (with timing) and its rows."""
    status, out, seconds, peak = run_measured(stage, video, frames, cfg, checks, **extra)
    if status != "ok":
        return StageResult(_summary(video["video_id"], Status.failed, out, seconds, peak))
    verdict, values, rows = out
    return StageResult(_summary(video["video_id"], verdict.status, verdict.message, seconds, peak, **values), rows)


def masks_for_video(job: dict, frames: FrameSettings, cfg: MaskConfig, checks: AnnotationChecks) -> StageResult:
    """``job``: {"video": catalog row, "reply": the VLM's objects (:func:`vlm_objects`) or None}."""
    return _isolated(_masks, job["video"], frames, cfg, checks, reply=job.get("reply"))


def masks_from_rows(rows: list[dict], column: str = "mask_png") -> np.ndarray:
    """(N, H, W) bool masks of one video from its LanceDB rows."""
    rows = sorted(rows, key=lambda r: r["frame_index"])
    return np.stack([decode_mask(r[column]) for r in rows]) if rows else np.zeros((0, 1, 1), bool)


# -- tracklets ---------------------------------------------------------------------------------


def _tracks(video: dict, frames: FrameSettings, cfg: TrackConfig, checks: AnnotationChecks) -> tuple:
    sampled, failure = _usable_frames(video, frames, checks)
    if failure:
        return failure
    tracks = track_grid(sampled.frames, cfg)
    rows, digest = [], hashlib.sha256()
    for w, win in enumerate(tracks.windows):
        xy = np.ascontiguousarray(win.points, np.float32)
        vis = np.ascontiguousarray(win.visible, np.uint8)
        digest.update(xy.tobytes())
        rows.append(
            {
                "video_id": video["video_id"],
                "window": w,
                "query_frame": int(win.query_frame),
                "frame_indices": [int(i) for i in win.frame_indices],
                "num_points": int(xy.shape[1]),
                "xy": xy.tobytes(),
                "visible": vis.tobytes(),
                "continues": win.continues.astype(np.int32).tobytes(),
            }
        )
    survival = tracks.survival()
    summary = {
        "n_frames": tracks.num_frames,
        "width": tracks.width,
        "height": tracks.height,
        "windows": len(tracks.windows),
        "observations": tracks.num_observations,
        "mean_final_survival": float(np.nanmean(survival[:, -1])) if survival.size else float("nan"),
        "stage_seconds": json.dumps(tracks.timings),
        "content_sha": digest.hexdigest()[:16],
    }
    return Verdict(Status.ok), summary, rows


def tracks_for_video(video: dict, frames: FrameSettings, cfg: TrackConfig, checks: AnnotationChecks) -> StageResult:
    return _isolated(_tracks, video, frames, cfg, checks)


def tracklets_from_rows(rows: list[dict], num_frames: int, width: int, height: int) -> Tracklets:
    windows = []
    for r in sorted(rows, key=lambda r: r["window"]):
        t, p = len(r["frame_indices"]), r["num_points"]
        windows.append(
            TrackWindow(
                query_frame=r["query_frame"],
                frame_indices=np.asarray(r["frame_indices"]),
                points=np.frombuffer(r["xy"], np.float32).reshape(t, p, 2),
                visible=np.frombuffer(r["visible"], np.uint8).reshape(t, p).astype(bool),
                # rows written before continued tracks existed have none
                continues=np.frombuffer(r["continues"], np.int32).astype(np.int64)
                if r.get("continues") is not None
                else None,
            )
        )
    return Tracklets(windows, num_frames, width, height)


# -- camera poses --------------------------------------------------------------------------------


@dataclass
class Upstream:
    """What an upstream stage (masks, tracking) recorded for the video."""

    status: str
    message: str | None = None
    seconds: float = 0.0
    peak_mib: float = float("nan")


@dataclass
class PoseJob:
    """Everything SfM needs for one video: frame times, tracklet and mask rows, the upstream outcomes."""

    video_id: str
    timestamps: list[float]
    source_indices: list[int]
    width: int
    height: int
    track_rows: list[dict]
    mask_rows: list[dict]
    upstream: dict[str, Upstream]  # stage name -> outcome, in the order the stages ran
    focal_hint: float | None = None  # px at the annotated size: the focal filter's candidate sweep
    video: dict | None = None  # the catalog row, when SfM needs the frames (bridging)
    frames: FrameSettings | None = None

    @property
    def n_frames(self) -> int:
        return len(self.timestamps)


def _poses(job: PoseJob, cfg: SfmConfig, checks: AnnotationChecks) -> tuple[Verdict, PoseResult]:
    """static_camera before SfM, then sfm_failed / low_registration / ok."""
    w, h, ts = job.width, job.height, np.asarray(job.timestamps)
    tracks = tracklets_from_rows(job.track_rows, job.n_frames, w, h)
    masks = masks_from_rows(job.mask_rows) if job.mask_rows else None
    verdict = motion_verdict(track_motion(tracks, masks), w, h, checks)
    if not verdict.ok:
        return verdict, failed_result(ts, w, h, verdict.message, cfg)

    def pixels():  # bridging decodes the frames only where tracks break
        return decode(job.video, job.frames).frames

    bridge = cfg.bridge and job.video is not None
    poses = run_sfm(
        tracks,
        masks,
        ts,
        cfg,
        min_registered=checks.min_registered,
        focal_hint=job.focal_hint,
        frames=pixels if bridge else None,
    )
    return poses_verdict(poses, checks), poses


def poses_for_video(job: PoseJob, cfg: SfmConfig, checks: AnnotationChecks) -> dict:
    """The ``camera_poses`` row of one video; an upstream failure names its status."""
    ts = np.asarray(job.timestamps)
    failed = next((u for u in job.upstream.values() if u.status != Status.ok), None)
    if failed is not None:
        result = failed_result(ts, job.width or 1, job.height or 1, failed.message or failed.status)
        return pose_row(job.video_id, OURS, result, job.source_indices, status=failed.status, message=failed.message)
    status, value, seconds, peak = run_measured(_poses, job, cfg, checks)
    stage_seconds = {**{name: u.seconds for name, u in job.upstream.items()}, "sfm": seconds}
    total = sum(stage_seconds.values())
    peak = max([p for p in (peak, *(u.peak_mib for u in job.upstream.values())) if p == p], default=float("nan"))
    if status != "ok":
        result = failed_result(ts, job.width, job.height, value)
        return pose_row(
            job.video_id,
            OURS,
            result,
            job.source_indices,
            status=Status.failed,
            message=value,
            seconds=total,
            peak_mib=peak,
            stage_seconds=stage_seconds,
        )
    verdict, result = value
    return pose_row(
        job.video_id,
        OURS,
        result,
        job.source_indices,
        status=verdict.status,
        message=verdict.message,
        seconds=total,
        peak_mib=peak,
        stage_seconds=stage_seconds,
    )
