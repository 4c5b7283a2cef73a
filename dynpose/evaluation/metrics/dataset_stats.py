"""Per-video dataset statistics: length, camera rotation (paper Figures 6 and 17), mask area.

Rotation axes. SfM poses have no gravity, so the reference is the *first registered camera*:
its OpenCV axes (x right, y down, z forward) are the frame in which every later camera's optical
axis ``f`` (its +z axis) is expressed. Then

- horizontal rotation (yaw, a pan) is the angle of ``f`` about the first camera's y axis,
  ``atan2(f_x, f_z)``, positive when the camera turns to the right;
- vertical rotation (pitch, a tilt) is the elevation of ``f`` above the first camera's x-z plane,
  ``atan2(-f_y, hypot(f_x, f_z))``, positive when the camera tilts up.

Both use the optical axis only, so roll about it does not count. Yaw is unwrapped through the
frame-to-frame changes (each wrapped to [-180, 180)), so a 400 degree pan reads 400.
*final* is the signed angle of the last registered frame; *summed* is the sum of the absolute
frame-to-frame changes over consecutive registered frames ("measured sequentially", Figure 17).
"""

from __future__ import annotations

import numpy as np

from dynpose.domain.camera import PoseResult


def video_length(timestamps: np.ndarray) -> float:
    """Seconds covered by the frames: timestamp span plus one median frame interval."""
    t = np.sort(np.asarray(timestamps, np.float64))
    if len(t) < 2:
        return 0.0
    return float(t[-1] - t[0] + np.median(np.diff(t)))


def yaw_pitch(poses_w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame wrapped yaw and pitch (degrees) of the optical axis in the first camera's frame."""
    rots = np.asarray(poses_w2c, np.float64)[:, :, :3]
    # Optical axis of camera k in world is R_k^T e_z = R_k[2]; in camera 0 it is R_0 R_k[2].
    axis = np.einsum("ab,nb->na", rots[0], rots[:, 2, :])
    yaw = np.degrees(np.arctan2(axis[:, 0], axis[:, 2]))
    pitch = np.degrees(np.arctan2(-axis[:, 1], np.hypot(axis[:, 0], axis[:, 2])))
    return yaw, pitch


def _wrap(deg: np.ndarray) -> np.ndarray:
    return (deg + 180.0) % 360.0 - 180.0


def rotation_statistics(poses_w2c: np.ndarray, registered: np.ndarray | None = None) -> dict:
    """Final and summed horizontal / vertical rotation in degrees (module docstring)."""
    poses = np.asarray(poses_w2c, np.float64)
    if registered is not None:
        poses = poses[np.asarray(registered, bool)]
    if len(poses) < 2:
        return {k: 0.0 for k in ("final_yaw_deg", "final_pitch_deg", "sum_abs_yaw_deg", "sum_abs_pitch_deg")}
    yaw, pitch = yaw_pitch(poses)
    d_yaw, d_pitch = _wrap(np.diff(yaw)), np.diff(pitch)
    return {
        "final_yaw_deg": float(np.sum(d_yaw)),
        "final_pitch_deg": float(pitch[-1]),
        "sum_abs_yaw_deg": float(np.sum(np.abs(d_yaw))),
        "sum_abs_pitch_deg": float(np.sum(np.abs(d_pitch))),
    }


def mask_area_stats(coverage) -> dict:
    """Dynamic-mask area from per-frame coverage fractions (N,) or boolean masks (N, H, W).

    ``mean`` is the apparent dynamic size of Figure 6 (right); ``p90`` is the masking filter's
    statistic (appendix A: p90 per-frame area > 80% rejects a video). Both are fractions in [0, 1].
    """
    cov = np.asarray(coverage)
    if cov.ndim == 3:
        cov = cov.reshape(len(cov), -1).mean(axis=1)
    cov = cov.astype(np.float64)
    if len(cov) == 0:
        return {"mean": float("nan"), "p90": float("nan")}
    return {"mean": float(np.mean(cov)), "p90": float(np.percentile(cov, 90))}


def pose_statistics(result: PoseResult) -> dict:
    """Length, frame counts and rotation statistics of one annotated video."""
    return {
        "length_s": video_length(result.timestamps),
        "n_frames": int(len(result.timestamps)),
        "registered_ratio": result.registered_ratio,
        **rotation_statistics(result.poses_w2c, result.registered),
    }
