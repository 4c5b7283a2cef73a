"""Per-track motion level (TracksTo4D's static loss, fitted instead of learned).

After a first bundle adjustment, every tracklet point (window ``k``, point ``p``) is triangulated
from its visible observations in registered frames as if it were static, and its reprojection
residuals ``r`` are fitted with a zero-mean Cauchy scale ``gamma`` that minimises TracksTo4D's
negative log-likelihood ``sum log(gamma + r^2 / gamma)``. A static point's residuals are tracking
noise (about a pixel); a point on a moving object cannot be explained by one 3-D position, and its
``gamma`` grows with how far it moved, accumulated over the whole track, so slow movers show up
as well as fast ones. ``gamma`` is in pixels at the annotated resolution (the minimiser of one
residual's term is ``gamma = |r|``).
"""

from __future__ import annotations

import numpy as np

from dynpose.domain.annotate.tracking import Tracklets
from dynpose.domain.camera import PoseResult

GAMMAS = np.geomspace(0.05, 500.0, 97)  # the candidate scales (px); 97 steps: 10% apart


def undistort_normalised(xy: np.ndarray, k1: float, iterations: int = 5) -> np.ndarray:
    """Normalised coordinates of SIMPLE_RADIAL observations ``xy`` (already ``K^-1`` applied)."""
    if not k1:
        return xy
    u = xy.copy()
    for _ in range(iterations):  # fixed point of x_d = x_u (1 + k1 |x_u|^2)
        u = xy / (1.0 + k1 * np.sum(u * u, axis=-1, keepdims=True))
    return u


def cauchy_scale(residuals: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per row, the gamma of ``GAMMAS`` minimising ``sum log(gamma + r^2 / gamma)`` over valid entries.

    ``residuals``, ``valid``: (P, T). Rows without a valid entry get NaN."""
    r2 = np.where(valid, residuals, 0.0)[..., None] ** 2
    cost = np.where(valid[..., None], np.log(GAMMAS + r2 / GAMMAS), 0.0).sum(axis=1)  # (P, G)
    gamma = GAMMAS[np.argmin(cost, axis=1)]
    return np.where(valid.any(axis=1), gamma, np.nan)


def _window_residuals(points, visible, frames, poses, registered, f, c, k1):
    """Residuals (P, T) in pixels of each point's static triangulation, and which are valid."""
    use = visible & registered[frames][:, None]  # (T, P)
    xn = undistort_normalised((points - c) / f, k1)  # (T, P, 2) normalised
    R, t = poses[frames, :, :3], poses[frames, :, 3]  # (T, 3, 3), (T, 3)
    # DLT rows per observation: x * P3 - P1, y * P3 - P2 (zero rows where unused)
    P = np.concatenate([R, t[:, :, None]], axis=2)  # (T, 3, 4)
    rows_x = xn[..., 0:1] * P[:, None, 2, :] - P[:, None, 0, :]  # (T, P, 4)
    rows_y = xn[..., 1:2] * P[:, None, 2, :] - P[:, None, 1, :]
    A = np.concatenate([rows_x, rows_y], axis=0) * np.concatenate([use, use], axis=0)[..., None]
    A = np.transpose(A, (1, 0, 2))  # (P, 2T, 4)
    enough = use.sum(axis=0) >= 2
    X = np.full((A.shape[0], 4), np.nan)
    if enough.any():
        _, _, vt = np.linalg.svd(A[enough], full_matrices=False)
        X[enough] = vt[:, -1, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        Xw = X[:, :3] / X[:, 3:4]  # (P, 3)
        cam = np.einsum("tij,pj->tpi", R, Xw) + t[:, None, :]  # (T, P, 3)
        proj = cam[..., :2] / cam[..., 2:3]
        res = np.linalg.norm((proj - xn) * f, axis=-1)  # px (undistorted; distortion is small)
        behind = cam[..., 2] <= 0
    res = np.where(behind, 1e3, res)  # a point that lands behind a camera cannot be static
    valid = use & enough[None, :] & np.isfinite(res)
    return res.T, valid.T


def track_gamma(tracklets: Tracklets, poses: PoseResult, min_observations: int = 3) -> list[np.ndarray]:
    """Motion level gamma (px) of every tracklet point, one (P,) array per window.

    NaN where the point has fewer than ``min_observations`` visible observations in registered
    frames (nothing to fit). ``poses``: the first BA's world-to-camera poses and shared camera."""
    k = poses.intrinsics
    f = np.array([k.fx, k.fy])
    c = np.array([k.cx, k.cy])
    k1 = float(poses.extra.get("radial_k1") or 0.0)
    out = []
    for win in tracklets.windows:
        res, valid = _window_residuals(
            win.points.astype(np.float64), win.visible, win.frame_indices, poses.poses_w2c, poses.registered, f, c, k1
        )
        gamma = cauchy_scale(res, valid)
        gamma[valid.sum(axis=1) < min_observations] = np.nan
        out.append(gamma)
    return out


def relative_motion_level(gamma: np.ndarray) -> np.ndarray:
    """``gamma`` over the video's median gamma: a motion level free of the video's tracking-noise scale.

    Most tracked points are static, so the median is the static noise level; it differs between
    videos (texture, blur, track length), which makes one pixel threshold wrong for some of them."""
    gamma = np.asarray(gamma, np.float64)
    median = np.nanmedian(gamma) if np.isfinite(gamma).any() else np.nan
    return gamma / median if median > 0 else np.full_like(gamma, np.nan)


def dynamic_track_masks(
    tracklets: Tracklets, gamma: list[np.ndarray], threshold: float, radius: float | None = None
) -> np.ndarray:
    """(N, H, W) bool: disks of ``radius`` px around the observations of points with gamma > threshold.

    The default radius, 0.75 x the query-grid spacing, joins a moving object's neighbouring points
    into one region (each grid cell holds one point)."""
    import cv2

    n, h, w = tracklets.num_frames, tracklets.height, tracklets.width
    grid = max(int(np.sqrt(max(win.points.shape[1] for win in tracklets.windows))), 1) if tracklets.windows else 1
    radius = radius or 0.75 * max(w, h) / grid
    out = np.zeros((n, h, w), np.uint8)
    r = max(int(round(radius)), 1)
    for win, g in zip(tracklets.windows, gamma):
        moving = np.nan_to_num(g, nan=0.0) > threshold
        if not moving.any():
            continue
        for row, frame in enumerate(win.frame_indices):
            sel = moving & win.visible[row]
            for x, y in np.round(win.points[row, sel]).astype(int):
                cv2.circle(out[frame], (int(x), int(y)), r, 1, -1)
    return out.astype(bool)
