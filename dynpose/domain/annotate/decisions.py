"""What status a video's annotation gets: the one decision path of ``dynpose annotate`` and the graph.

The checks run in this order, and the first that fails names the video's status:
``too_few_frames`` -> ``no_texture`` (the sampled frames), ``static_camera`` (the tracks),
``sfm_failed`` -> ``low_registration`` (the poses), else ``ok``. Thresholds are settings
(``annotation_checks``), so they are hashed with the products that apply them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dynpose.domain.annotate.tracking import Tracklets
from dynpose.domain.camera import PoseResult
from dynpose.domain.status import Status

MIN_REGISTERED = 0.8  # DynPose-100K A.2: trajectories with fewer frames registered are dropped


@dataclass
class AnnotationChecks:
    min_frames: int = 3  # fewer sampled frames: too_few_frames
    min_texture: float = 1.0  # median per-frame local contrast (gray levels) below this: no_texture
    static_motion: float = 0.01  # p90 static-track displacement below this x image diagonal: static_camera
    min_registered: float = MIN_REGISTERED  # fewer frames registered: low_registration (and no tier)


@dataclass(frozen=True)
class Verdict:
    status: Status
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == Status.ok


OK = Verdict(Status.ok)


def local_contrast(frames: np.ndarray) -> np.ndarray:
    """Per-frame std of the gray image minus its blur: ~0 for black, flat or defocused frames."""
    out = []
    for f in frames:
        g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32) if f.ndim == 3 else f.astype(np.float32)
        out.append(float(np.std(g - cv2.GaussianBlur(g, (0, 0), 3))))
    return np.asarray(out)


def frames_verdict(frames: np.ndarray, checks: AnnotationChecks) -> tuple[Verdict, dict]:
    """Are these sampled frames usable? The verdict and what was measured (for ``stats``)."""
    n = len(frames)
    if n < checks.min_frames:
        return Verdict(Status.too_few_frames, f"{n} sampled frame(s), need {checks.min_frames}"), {}
    contrast = float(np.median(local_contrast(frames)))
    if contrast < checks.min_texture:
        return Verdict(Status.no_texture, f"median local contrast {contrast:.2f} < {checks.min_texture}"), {
            "local_contrast": contrast
        }
    return OK, {"local_contrast": contrast}


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


def motion_verdict(motion_px: float, width: int, height: int, checks: AnnotationChecks) -> Verdict:
    """Does the camera move enough to triangulate? ``motion_px``: p90 static-track displacement."""
    if motion_px < checks.static_motion * float(np.hypot(width, height)):
        return Verdict(Status.static_camera, f"p90 static track motion {motion_px:.1f} px")
    return OK


def poses_verdict(poses: PoseResult, checks: AnnotationChecks) -> Verdict:
    """What SfM's result says: nothing registered, too few registered, or ok."""
    if not poses.registered.any():
        return Verdict(Status.sfm_failed, poses.extra.get("reason", "nothing registered"))
    if poses.registered_ratio < checks.min_registered:
        return Verdict(
            Status.low_registration, f"{int(poses.registered.sum())}/{len(poses.registered)} frames registered"
        )
    return OK
