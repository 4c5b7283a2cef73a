"""Per-video camera-pose annotation: frames -> dynamic masks -> grid tracklets -> global BA -> tiers.

Resolution policy: frames are sampled at ``fps`` (12, the paper's annotation rate) and resized so
that the long side is at most ``max_side`` (854 px, i.e. 480p for 16:9); masks, tracks, poses and
intrinsics all refer to that annotated resolution (``annotation.json`` records it, and
:meth:`dynpose.domain.camera.Intrinsics.scaled` converts to any other).

Statuses (``Annotation.status``), never exceptions for a bad video:

- ``ok``: >= 80% of frames registered;
- ``low_registration``: SfM ran but registered fewer than 80% of frames;
- ``sfm_failed``: SfM registered nothing (reason in ``poses.extra["reason"]``);
- ``too_few_frames``: fewer than ``min_frames`` sampled frames;
- ``no_texture``: the frames are (nearly) uniform, e.g. black or flat gray;
- ``static_camera``: static-scene tracks barely move, so there is no baseline to triangulate;
- a :class:`dynpose.domain.video.VideoError` status (``unreadable``, ``too_short``, ...) from decoding.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from dynpose.domain.annotate.masks import MaskConfig, compute_dynamic_masks
from dynpose.domain.annotate.quality import Quality, assess
from dynpose.domain.annotate.sfm import SfmConfig, failed_result, run_sfm
from dynpose.domain.annotate.tracking import TrackConfig, Tracklets, track_grid
from dynpose.domain.camera import PoseResult, write_cameras_pkl, write_tum
from dynpose.domain.video import SampledFrames, VideoError, probe, sample_frames

ANNOTATION_VERSION = 2  # 2: focal_plausible; intrinsics null when nothing was decoded


@dataclass
class AnnotateConfig:
    fps: float = 12.0  # paper: annotation at 12 fps
    max_side: int | None = 854  # long side of the annotated resolution (None: source resolution)
    max_frames: int | None = None  # cap on sampled frames (None: the whole video)
    masks: MaskConfig | None = field(default_factory=MaskConfig)  # None: no dynamic masking
    tracking: TrackConfig = field(default_factory=TrackConfig)
    sfm: SfmConfig = field(default_factory=SfmConfig)
    min_frames: int = 3  # fewer sampled frames: too_few_frames
    min_texture: float = 1.0  # median per-frame local contrast (gray levels) below this: no_texture
    static_motion: float = 0.01  # p90 track displacement below this x image diagonal: static_camera


@dataclass
class Annotation:
    status: str
    message: str | None
    timestamps: np.ndarray  # (N,) source seconds of the sampled frames
    source_indices: np.ndarray  # (N,) decode-order frame indices
    width: int
    height: int
    poses: PoseResult
    quality: Quality
    timings: dict[str, float]
    masks: np.ndarray | None = None  # (N, H, W) bool union of dynamic masks
    tracklets: Tracklets | None = None
    stats: dict = field(default_factory=dict)


def local_contrast(frames: np.ndarray) -> np.ndarray:
    """Per-frame std of the gray image minus its blur: ~0 for black, flat or defocused frames."""
    out = []
    for f in frames:
        g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32) if f.ndim == 3 else f.astype(np.float32)
        out.append(float(np.std(g - cv2.GaussianBlur(g, (0, 0), 3))))
    return np.asarray(out)


def track_motion(tracklets: Tracklets, masks: np.ndarray | None) -> float:
    """90th percentile over static tracks of the largest displacement from their query point (px)."""
    moves = []
    for win in tracklets.windows:
        q = win.points[win.query_offset]
        keep = np.ones(len(q), bool)
        if masks is not None:
            x = np.clip(np.round(q[:, 0]).astype(int), 0, tracklets.width - 1)
            y = np.clip(np.round(q[:, 1]).astype(int), 0, tracklets.height - 1)
            keep = ~masks[win.query_frame, y, x]
        d = np.linalg.norm(win.points - q[None], axis=2)
        d[~win.visible] = 0.0
        moves.append(d.max(axis=0)[keep & (win.visible.sum(axis=0) > 1)])
    moves = np.concatenate(moves) if moves else np.zeros(0)
    return float(np.percentile(moves, 90)) if len(moves) else 0.0


def annotate_frames(sampled: SampledFrames, cfg: AnnotateConfig | None = None, masks: np.ndarray | None = None) -> Annotation:
    """Annotate sampled frames with camera poses; bad input gives a failure status, not an exception.

    ``masks`` ((N, H, W) bool, True = dynamic) replaces the computed dynamic masks when given
    (stored or ground-truth masks); otherwise ``cfg.masks`` says how to compute them, if at all.
    """
    cfg = cfg or AnnotateConfig()
    frames = sampled.frames
    n = len(frames)
    h, w = (frames.shape[1:3] if frames.ndim >= 3 and n else (0, 0))
    timings: dict[str, float] = {}
    stats: dict = {"n_frames": n}
    t_start = time.perf_counter()

    def finish(status: str, message: str | None, poses: PoseResult | None = None, **arrays) -> Annotation:
        poses = poses or failed_result(sampled.timestamps, max(w, 1), max(h, 1), message or status, cfg.sfm)
        timings["total_s"] = time.perf_counter() - t_start
        return Annotation(status, message, np.asarray(sampled.timestamps), np.asarray(sampled.source_indices), int(w), int(h),
                          poses, assess(poses, cfg.sfm.min_registered), timings, stats=stats, **arrays)

    if n < cfg.min_frames:
        return finish("too_few_frames", f"{n} sampled frame(s), need {cfg.min_frames}")
    t0 = time.perf_counter()
    contrast = float(np.median(local_contrast(frames)))
    stats["local_contrast"] = contrast
    timings["checks_s"] = time.perf_counter() - t0
    if contrast < cfg.min_texture:
        return finish("no_texture", f"median local contrast {contrast:.2f} < {cfg.min_texture}")

    if masks is not None:
        masks = np.asarray(masks, bool)
        if masks.shape != frames.shape[:3]:
            raise ValueError(f"masks {masks.shape} do not match frames {frames.shape[:3]}")
    elif cfg.masks is not None:
        t0 = time.perf_counter()
        dyn = compute_dynamic_masks(frames, cfg.masks)
        masks = dyn.union
        timings["masks_s"] = time.perf_counter() - t0
    if masks is not None:
        stats["mask_coverage"] = float(masks.mean())
    t0 = time.perf_counter()
    tracklets = track_grid(frames, cfg.tracking)
    timings["tracking_s"] = time.perf_counter() - t0
    stats["track_observations"] = tracklets.num_observations
    motion = track_motion(tracklets, masks)
    stats["track_motion_p90_px"] = motion
    if motion < cfg.static_motion * float(np.hypot(w, h)):
        return finish("static_camera", f"p90 static track motion {motion:.1f} px", masks=masks, tracklets=tracklets)

    t0 = time.perf_counter()
    poses = run_sfm(tracklets, masks, sampled.timestamps, cfg.sfm)
    timings["sfm_s"] = time.perf_counter() - t0
    if not poses.registered.any():
        return finish("sfm_failed", poses.extra.get("reason", "nothing registered"), poses, masks=masks, tracklets=tracklets)
    if poses.registered_ratio < cfg.sfm.min_registered:
        msg = f"{poses.registered.sum()}/{n} frames registered"
        return finish("low_registration", msg, poses, masks=masks, tracklets=tracklets)
    return finish("ok", None, poses, masks=masks, tracklets=tracklets)


def annotation_json(ann: Annotation, cfg: AnnotateConfig | None = None, source: dict | None = None) -> dict:
    """The ``annotation.json`` document of an annotation (docs/annotation.md)."""
    k = ann.poses.intrinsics
    rep = ann.poses.reprojection_error
    return {
        "version": ANNOTATION_VERSION,
        "status": ann.status,
        "message": ann.message,
        "source": source or {},
        "n_frames": len(ann.timestamps),
        "width": ann.width,
        "height": ann.height,
        # null when nothing was decoded: there is no image the guess would describe
        "intrinsics": {"fx": k.fx, "fy": k.fy, "cx": k.cx, "cy": k.cy, "width": k.width, "height": k.height} if len(ann.timestamps) else None,
        "camera_model": ann.poses.extra.get("camera_model"),
        "radial_k1": ann.poses.extra.get("radial_k1"),
        "registered_frames": int(np.sum(ann.poses.registered)),
        "registered_ratio": ann.quality.registered_ratio,
        "reprojection_error": rep if np.isfinite(rep) else None,
        "num_points": ann.poses.num_points,
        "focal_plausible": ann.quality.focal_plausible,
        "tier": ann.quality.tier,
        "timings": ann.timings,
        "stats": {k2: v for k2, v in ann.stats.items() if isinstance(v, (int, float, str, bool))},
        "sfm": {key: ann.poses.extra.get(key) for key in ("mapper", "reason", "stats", "attempts")},
        "config": asdict(cfg) if cfg is not None else None,
    }


def write_outputs(ann: Annotation, out_dir: str | Path, cfg: AnnotateConfig | None = None, source: dict | None = None) -> None:
    """Write ``trajectory.tum``, ``cameras.pkl`` and ``annotation.json`` (always all three)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_tum(out / "trajectory.tum", ann.poses.timestamps, ann.poses.poses_w2c, ann.poses.registered)
    write_cameras_pkl(out / "cameras.pkl", ann.poses)
    doc = annotation_json(ann, cfg, source)
    (out / "annotation.json").write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def annotate_video(path: str | Path, out_dir: str | Path, cfg: AnnotateConfig | None = None) -> Annotation:
    """Decode ``path`` at ``cfg.fps``, annotate it and write the three output files to ``out_dir``."""
    cfg = cfg or AnnotateConfig()
    source: dict = {"path": str(path)}
    t0 = time.perf_counter()
    try:
        info = probe(str(path))
        source.update(width=info.width, height=info.height, fps=info.fps, duration=info.duration)
        sampled = sample_frames(str(path), fps=cfg.fps, max_side=cfg.max_side, max_frames=cfg.max_frames)
    except VideoError as exc:
        empty = SampledFrames(np.zeros((0, 1, 1, 3), np.uint8), np.zeros(0), np.zeros(0, int), cfg.fps)
        ann = annotate_frames(empty, cfg)
        ann.status, ann.message = exc.status, exc.message
    else:
        decode_s = time.perf_counter() - t0
        ann = annotate_frames(sampled, cfg)
        ann.timings = {"decode_s": decode_s, **ann.timings, "total_s": ann.timings["total_s"] + decode_s}
    ann.stats["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process-wide peak
    write_outputs(ann, out_dir, cfg, source)
    return ann
