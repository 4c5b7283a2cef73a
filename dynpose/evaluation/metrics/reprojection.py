"""Sampson reprojection error of ground-truth correspondences under predicted poses (Panda-Test).

Protocol (DynPose-100K section 5.2 and appendix C.2, docs/evaluation.md):

- for a correspondence ``x_i <-> x_j`` between frames ``i`` and ``j`` the predicted relative pose
  ``(R, t)`` from camera ``i`` to camera ``j`` and the predicted intrinsics give the fundamental
  matrix ``F = K^-T [t]x R K^-1`` with ``x_j^T F x_i = 0``;
- the error is the square root of the Sampson error (first-order distance to the epipolar
  geometry, both images), reported in *720p-normalised pixels*: pixel distances at the
  correspondences' resolution ``W x H`` multiplied by ``720 / H`` (the Sampson distance scales
  exactly linearly under an isotropic change of pixel units);
- unregistered predicted frames take the pose of the nearest registered frame in time; a
  sequence with no registered frame is replaced by identity poses;
- a relative pose without translation (identity, e.g. two frames filled from the same frame)
  makes ``F`` vanish. The error is then the distance from ``x_j`` to ``x_i`` transferred by the
  rotation's homography ``K R K^-1`` -- for the identity, the distance to the corresponding point.
"""

from __future__ import annotations

import numpy as np

from dynpose.domain.camera import PoseResult
from dynpose.evaluation.metrics.trajectory import fill_nearest

REFERENCE_HEIGHT = 720  # pixels: errors are reported as if the image were 720 pixels high
THRESHOLDS = (5.0, 10.0, 30.0)  # 720p pixels, paper Table 3


def _column(table, name: str) -> np.ndarray:
    """One column of a pyarrow / pandas / polars table or a dict of arrays, as a numpy array."""
    col = table[name]
    if hasattr(col, "to_numpy") and not isinstance(col, np.ndarray):
        try:
            return np.asarray(col.to_numpy())
        except TypeError:  # pyarrow ChunkedArray with nulls wants zero_copy_only=False
            return np.asarray(col.to_numpy(zero_copy_only=False))
    return np.asarray(col)


def _has(table, name: str) -> bool:
    for attr in ("column_names", "columns"):  # pyarrow, then pandas / polars
        if hasattr(table, attr):
            return name in list(getattr(table, attr))
    return name in table


def skew(v: np.ndarray) -> np.ndarray:
    """Cross-product matrices of (..., 3) vectors."""
    out = np.zeros(v.shape[:-1] + (3, 3))
    out[..., 0, 1], out[..., 0, 2] = -v[..., 2], v[..., 1]
    out[..., 1, 0], out[..., 1, 2] = v[..., 2], -v[..., 0]
    out[..., 2, 0], out[..., 2, 1] = -v[..., 1], v[..., 0]
    return out


def relative_pose(pose_i: np.ndarray, pose_j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera-i-to-camera-j rotation and translation from world-to-camera (..., 3, 4) poses."""
    r_i, t_i, r_j, t_j = pose_i[..., :3], pose_i[..., 3], pose_j[..., :3], pose_j[..., 3]
    rot = r_j @ np.swapaxes(r_i, -1, -2)
    return rot, t_j - np.einsum("...ab,...b->...a", rot, t_i)


def fundamental_matrix(rot: np.ndarray, trans: np.ndarray, k_i: np.ndarray, k_j: np.ndarray) -> np.ndarray:
    """F with x_j^T F x_i = 0 for the relative pose (rot, trans) from camera i to camera j."""
    essential = skew(trans) @ rot
    return np.linalg.inv(k_j).T @ essential @ np.linalg.inv(k_i)


def sampson_distance(fmat: np.ndarray, x_i: np.ndarray, x_j: np.ndarray) -> np.ndarray:
    """Square root of the Sampson error of (..., 2) pixel points under (..., 3, 3) F (as cv2.sampsonDistance)."""
    h_i = np.concatenate([x_i, np.ones(x_i.shape[:-1] + (1,))], axis=-1)
    h_j = np.concatenate([x_j, np.ones(x_j.shape[:-1] + (1,))], axis=-1)
    f_xi = np.einsum("...ab,...b->...a", fmat, h_i)
    ft_xj = np.einsum("...ba,...b->...a", fmat, h_j)
    residual = np.einsum("...a,...a->...", h_j, f_xi)
    grad2 = f_xi[..., 0] ** 2 + f_xi[..., 1] ** 2 + ft_xj[..., 0] ** 2 + ft_xj[..., 1] ** 2
    return np.sqrt(residual**2 / np.maximum(grad2, np.finfo(float).tiny))


def rotation_transfer_distance(
    rot: np.ndarray, k_i: np.ndarray, k_j: np.ndarray, x_i: np.ndarray, x_j: np.ndarray
) -> np.ndarray:
    """Distance from x_j to x_i mapped by the infinite homography K_j R K_i^-1 (identity: ||x_j - x_i||)."""
    h_i = np.concatenate([x_i, np.ones(x_i.shape[:-1] + (1,))], axis=-1)
    mapped = np.einsum("...ab,...b->...a", k_j @ rot @ np.linalg.inv(k_i), h_i)
    return np.linalg.norm(mapped[..., :2] / mapped[..., 2:3] - x_j, axis=-1)


def evaluable_poses(pred: PoseResult) -> np.ndarray:
    """The paper's fallback: nearest registered pose for unregistered frames, identity if none."""
    if not np.any(pred.registered):
        poses = np.zeros((len(pred.timestamps), 3, 4))
        poses[:, :, :3] = np.eye(3)
        return poses
    return fill_nearest(pred).poses_w2c


def _frame_indices(pred: PoseResult, table, side: str) -> np.ndarray:
    """Frame index per correspondence: column ``frame_<side>``, else nearest time to ``t_<side>``."""
    if _has(table, f"frame_{side}"):
        return _column(table, f"frame_{side}").astype(np.int64)
    times = _column(table, f"t_{side}").astype(np.float64)
    return np.argmin(np.abs(np.asarray(pred.timestamps)[None, :] - times[:, None]), axis=1)


def reprojection_errors(
    pred: PoseResult, correspondences, width: int, height: int, no_baseline_tol: float = 1e-9
) -> np.ndarray:
    """Per-correspondence reprojection error in 720p-normalised pixels.

    ``correspondences`` has columns ``frame_i, frame_j`` (indices into ``pred``'s frames; or
    ``t_i, t_j`` in seconds) and ``x_i, y_i, x_j, y_j`` in pixels of a ``width x height`` image.
    A relative translation shorter than ``no_baseline_tol`` times the poses' translation norms
    counts as no baseline (module docstring).
    """
    poses = evaluable_poses(pred)
    k = pred.intrinsics.scaled(width, height).matrix()
    fi, fj = _frame_indices(pred, correspondences, "i"), _frame_indices(pred, correspondences, "j")
    x_i = np.stack([_column(correspondences, "x_i"), _column(correspondences, "y_i")], -1).astype(np.float64)
    x_j = np.stack([_column(correspondences, "x_j"), _column(correspondences, "y_j")], -1).astype(np.float64)
    rot, trans = relative_pose(poses[fi], poses[fj])
    scale = 1.0 + np.linalg.norm(poses[fi][..., 3], axis=-1) + np.linalg.norm(poses[fj][..., 3], axis=-1)
    no_baseline = np.linalg.norm(trans, axis=-1) <= no_baseline_tol * scale
    errors = np.empty(len(fi))
    if np.any(~no_baseline):
        fmat = fundamental_matrix(rot[~no_baseline], trans[~no_baseline], k, k)
        errors[~no_baseline] = sampson_distance(fmat, x_i[~no_baseline], x_j[~no_baseline])
    if np.any(no_baseline):
        errors[no_baseline] = rotation_transfer_distance(rot[no_baseline], k, k, x_i[no_baseline], x_j[no_baseline])
    return errors * (REFERENCE_HEIGHT / float(height))


def video_reprojection_error(pred: PoseResult, correspondences, width: int, height: int) -> float:
    """Mean 720p error over one video's correspondences (the per-video number of Table 3)."""
    errors = reprojection_errors(pred, correspondences, width, height)
    return float(np.mean(errors)) if len(errors) else float("nan")


def summarize_reprojection(per_video_means, thresholds=THRESHOLDS) -> dict:
    """Mean over videos and % of videos whose mean error is under each threshold (720p px)."""
    means = np.asarray(per_video_means, np.float64)
    out = {"n_videos": int(len(means)), "mean": float(np.mean(means)) if len(means) else float("nan")}
    for thr in thresholds:
        out[f"pct_under_{thr:g}"] = 100.0 * float(np.mean(means < thr)) if len(means) else float("nan")
    return out


__all__ = [
    "fundamental_matrix",
    "relative_pose",
    "reprojection_errors",
    "sampson_distance",
    "summarize_reprojection",
    "video_reprojection_error",
    "evaluable_poses",
]
