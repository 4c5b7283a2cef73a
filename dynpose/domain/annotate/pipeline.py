"""Per-video camera-pose annotation: frames -> dynamic masks -> grid tracklets -> global BA -> tiers.

Resolution policy: frames are sampled at ``fps`` (12, the paper's annotation rate) and resized so
that the long side is at most ``max_side`` (854 px, i.e. 480p for 16:9); masks, tracks, poses and
intrinsics all refer to that annotated resolution (``annotation.json`` records it, and
:meth:`dynpose.domain.camera.Intrinsics.scaled` converts to any other).

Statuses (``Annotation.status``), never exceptions for a bad video: the decision path of
:mod:`dynpose.domain.annotate.decisions` (the graph takes the same one), or a
:class:`dynpose.domain.video.VideoError` status (``unreadable``, ``too_short``, ...) from decoding.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dynpose.domain.annotate.decisions import (
    AnnotationChecks,
    Verdict,
    frames_verdict,
    motion_verdict,
    poses_verdict,
    track_motion,
)
from dynpose.domain.annotate.masks import MaskConfig, compute_dynamic_masks
from dynpose.domain.annotate.motion_level import dynamic_track_masks
from dynpose.domain.annotate.quality import Quality, TierSettings, assess
from dynpose.domain.annotate.sfm import SfmConfig, failed_result, run_sfm
from dynpose.domain.annotate.tracking import TrackConfig, Tracklets, track_grid
from dynpose.domain.camera import PoseResult, write_cameras_pkl, write_tum
from dynpose.domain.filters.focal import estimate_focal
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
    checks: AnnotationChecks = field(default_factory=AnnotationChecks)  # the status thresholds (decisions.py)
    tiers: TierSettings = field(default_factory=TierSettings)  # reprojection tiers (quality.py)


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
    mask_components: dict[str, np.ndarray] = field(default_factory=dict)  # masks added after SfM (track_motion)


def annotate_frames(
    sampled: SampledFrames,
    cfg: AnnotateConfig | None = None,
    masks: np.ndarray | None = None,
    tracklets: Tracklets | None = None,
) -> Annotation:
    """Annotate sampled frames with camera poses; bad input gives a failure status, not an exception.

    ``masks`` ((N, H, W) bool, True = dynamic) replaces the computed dynamic masks when given
    (stored or ground-truth masks); otherwise ``cfg.masks`` says how to compute them, if at all.
    ``tracklets`` replaces tracking the same way (an ablation that varies only SfM reuses them).
    """
    cfg = cfg or AnnotateConfig()
    frames = sampled.frames
    n = len(frames)
    h, w = frames.shape[1:3] if frames.ndim >= 3 and n else (0, 0)
    timings: dict[str, float] = {}
    stats: dict = {"n_frames": n}
    t_start = time.perf_counter()

    def finish(verdict: Verdict, poses: PoseResult | None = None, **arrays) -> Annotation:
        poses = poses or failed_result(
            sampled.timestamps, max(w, 1), max(h, 1), verdict.message or verdict.status, cfg.sfm
        )
        timings["total_s"] = time.perf_counter() - t_start
        return Annotation(
            verdict.status,
            verdict.message,
            np.asarray(sampled.timestamps),
            np.asarray(sampled.source_indices),
            int(w),
            int(h),
            poses,
            assess(poses, cfg.checks.min_registered, cfg.tiers),
            timings,
            stats=stats,
            **arrays,
        )

    t0 = time.perf_counter()
    verdict, measured = frames_verdict(frames, cfg.checks)
    stats.update(measured)
    timings["checks_s"] = time.perf_counter() - t0
    if not verdict.ok:
        return finish(verdict)

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
    if tracklets is None:
        t0 = time.perf_counter()
        tracklets = track_grid(frames, cfg.tracking)
        timings["tracking_s"] = time.perf_counter() - t0
    stats["track_observations"] = tracklets.num_observations
    motion = track_motion(tracklets, masks)
    stats["track_motion_p90_px"] = motion
    verdict = motion_verdict(motion, w, h, cfg.checks)
    if not verdict.ok:
        return finish(verdict, masks=masks, tracklets=tracklets)

    t0 = time.perf_counter()
    focal_hint = None
    if cfg.sfm.select != "first" and "sweep" in cfg.sfm.focal_inits:
        focal_hint = estimate_focal(frames, window=12).focal  # AnyCam's sweep: 12 frames = 1 s at 12 fps
        stats["focal_sweep_px"] = focal_hint
        timings["focal_sweep_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    poses = run_sfm(
        tracklets,
        masks,
        sampled.timestamps,
        cfg.sfm,
        min_registered=cfg.checks.min_registered,
        focal_hint=focal_hint,
        frames=frames if cfg.sfm.bridge else None,
    )
    timings["sfm_s"] = time.perf_counter() - t0
    components = {}
    if "track_gamma" in poses.extra:
        tracklets.gamma = poses.extra.pop("track_gamma")
    if cfg.sfm.motion_level and tracklets.gamma is not None:
        # TracksTo4D's motion level as a mask component: the moving points' neighbourhoods
        components["track_motion"] = dynamic_track_masks(tracklets, tracklets.gamma, cfg.sfm.gamma_max)
        masks = components["track_motion"] if masks is None else masks | components["track_motion"]
    return finish(poses_verdict(poses, cfg.checks), poses, masks=masks, tracklets=tracklets, mask_components=components)


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
        "intrinsics": {"fx": k.fx, "fy": k.fy, "cx": k.cx, "cy": k.cy, "width": k.width, "height": k.height}
        if len(ann.timestamps)
        else None,
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


def write_outputs(
    ann: Annotation, out_dir: str | Path, cfg: AnnotateConfig | None = None, source: dict | None = None
) -> None:
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
