"""Dense optical flow and two-view geometry on flow: the motion evidence of dynamic masking.

Conventions
- ``flow[y, x] = (dx, dy)`` maps pixel ``(x, y)`` of image ``a`` to ``(x + dx, y + dy)`` in ``b``.
- Points are ``(N, 2)`` float pixel coordinates ``(x, y)``.
- ``sampson_error`` is the raw first-order geometric error (a squared distance) in whatever
  coordinates it is given. ``flow_residual`` / ``motion_residual`` return it in the Ro-DynRF
  normalisation, the units in which the DynPose-100K threshold ``H*W/8100`` is stated: coordinates
  mapped to [-1, 1] (``u = 2(x + 0.5)/W - 1``), Sampson error computed there, then multiplied by
  ``((H + W) / 2) ** 2``. Since the error scales with image area like the threshold does, the
  threshold keeps its meaning at any working resolution.

Static-scene model: a fundamental matrix is degenerate when the camera only rotates, does not move,
or looks at a plane (a whole family of F fits, and a moving object can be absorbed by one of them).
``fit_static_model`` therefore fits a homography first and switches to F only when F explains a
large share of what the homography cannot (parallax); the residual of a homography is its transfer
error, scaled like Sampson's. Motion along an epipolar line stays invisible to any two-view test.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

_local = threading.local()
_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def to_gray(img: np.ndarray) -> np.ndarray:
    """uint8 grey image from RGB or grey input."""
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(img, dtype=np.uint8)


def dis_flow(a: np.ndarray, b: np.ndarray, preset: str = "medium") -> np.ndarray:
    """Dense flow from ``a`` to ``b`` (RGB or grey, same size) with OpenCV DIS; (H, W, 2) float32."""
    cache = getattr(_local, "dis", None)
    if cache is None:
        cache = _local.dis = {}
    if preset not in cache:  # one DIS object per thread: they hold internal buffers
        cache[preset] = cv2.DISOpticalFlow_create(_PRESETS[preset])
    return cache[preset].calc(to_gray(a), to_gray(b), None)


def warp_backward(img: np.ndarray, flow: np.ndarray, interp: int = cv2.INTER_LINEAR, border: float = 0.0) -> np.ndarray:
    """``out[y, x] = img[y + fy, x + fx]``: pull ``img`` through ``flow`` (defined on the output grid)."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(
        img, gx + flow[..., 0], gy + flow[..., 1], interp, borderMode=cv2.BORDER_CONSTANT, borderValue=border
    )


def pixel_grid(h: int, w: int, step: int = 1) -> np.ndarray:
    """(M, 2) pixel centres ``(x, y)`` of every ``step``-th pixel, row-major."""
    gx, gy = np.meshgrid(np.arange(0, w, step, dtype=np.float64), np.arange(0, h, step, dtype=np.float64))
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def _sampson(F, xa, ya, xb, yb):
    """Sampson error on coordinate arrays of any (broadcastable) shape, written out for speed."""
    f = [[float(v) for v in row] for row in F]
    la0 = f[0][0] * xa + f[0][1] * ya + f[0][2]  # F x_a: epipolar line in b
    la1 = f[1][0] * xa + f[1][1] * ya + f[1][2]
    la2 = f[2][0] * xa + f[2][1] * ya + f[2][2]
    lb0 = f[0][0] * xb + f[1][0] * yb + f[2][0]  # F^T x_b: epipolar line in a
    lb1 = f[0][1] * xb + f[1][1] * yb + f[2][1]
    num = (xb * la0 + yb * la1 + la2) ** 2
    return num / np.maximum(la0**2 + la1**2 + lb0**2 + lb1**2, 1e-12)


def _transfer(H, xa, ya, xb, yb):
    """Half the squared transfer error ``|x_b - H x_a|^2 / 2``: first-order error of a near-identity H."""
    h = [[float(v) for v in row] for row in H]
    z = h[2][0] * xa + h[2][1] * ya + h[2][2]
    z = np.where(np.abs(z) < 1e-12, 1e-12, z)
    px = (h[0][0] * xa + h[0][1] * ya + h[0][2]) / z
    py = (h[1][0] * xa + h[1][1] * ya + h[1][2]) / z
    return 0.5 * ((px - xb) ** 2 + (py - yb) ** 2)


def sampson_error(F: np.ndarray, pts_a: np.ndarray, pts_b: np.ndarray) -> np.ndarray:
    """First-order geometric error of ``x_b^T F x_a = 0`` per correspondence, (N,), squared units."""
    return _sampson(F, pts_a[:, 0], pts_a[:, 1], pts_b[:, 0], pts_b[:, 1])


def fit_fundamental(
    pts_a: np.ndarray, pts_b: np.ndarray, thresh: float = 1.0, method: str = "ransac", confidence: float = 0.999
) -> tuple[np.ndarray | None, np.ndarray]:
    """Robust F with ``x_b^T F x_a = 0``; returns (F or None, inlier mask). ``thresh`` in pixels.

    RANSAC by default: OpenCV 4.11's USAC variants (MAGSAC included) took 10-18 s on one near-zero
    flow pair from a static camera (a degenerate, all-inlier F), against < 5 ms for RANSAC.
    """
    inl = np.zeros(len(pts_a), bool)
    if len(pts_a) < 8:
        return None, inl
    flag = {"magsac": cv2.USAC_MAGSAC, "ransac": cv2.FM_RANSAC, "lmeds": cv2.FM_LMEDS}[method]
    F, mask = cv2.findFundamentalMat(pts_a.astype(np.float64), pts_b.astype(np.float64), flag, thresh, confidence, 2000)
    if F is None or F.shape != (3, 3):  # OpenCV may stack several 7-point solutions or give up
        return None, inl
    return F, mask.ravel().astype(bool)


def fit_homography(pts_a: np.ndarray, pts_b: np.ndarray, thresh: float = 1.0) -> tuple[np.ndarray | None, np.ndarray]:
    """Robust homography ``x_b ~ H x_a``; returns (H or None, inlier mask)."""
    if len(pts_a) < 4:
        return None, np.zeros(len(pts_a), bool)
    H, mask = cv2.findHomography(
        pts_a.astype(np.float64), pts_b.astype(np.float64), cv2.RANSAC, thresh, maxIters=2000, confidence=0.999
    )
    if H is None:
        return None, np.zeros(len(pts_a), bool)
    return H, mask.ravel().astype(bool)


def homography_error(H: np.ndarray, pts_a: np.ndarray, pts_b: np.ndarray) -> np.ndarray:
    """Half the squared transfer error per correspondence, (N,)."""
    return _transfer(H, pts_a[:, 0], pts_a[:, 1], pts_b[:, 0], pts_b[:, 1])


@dataclass
class StaticModel:
    """The static-scene motion between two frames: ``kind`` is "F" or "H", ``matrix`` in pixels."""

    kind: str
    matrix: np.ndarray
    inlier_ratio: float

    def error(self, pts_a: np.ndarray, pts_b: np.ndarray) -> np.ndarray:
        if self.kind == "F":
            return sampson_error(self.matrix, pts_a, pts_b)
        return homography_error(self.matrix, pts_a, pts_b)


def fit_static_model(pts_a: np.ndarray, pts_b: np.ndarray, thresh: float = 1.0, f_gain: float = 0.3) -> StaticModel:
    """H unless F explains more than ``f_gain`` of the samples that H leaves out.

    A homography is enough for a rotating or still camera and for a distant or planar scene; F is
    then ill-posed and one of its many solutions can swallow a moving object (seen on real clips:
    F "explains" two jumping children that H flags). Real parallax (3D structure, a translating
    camera) leaves large H-outlier regions that F explains; a moving object covering less than
    ``f_gain`` of the frame does not tip the choice. On synthetic clips with ground truth
    (docs/masks.md) F also swallowed walking people and cars in translating 3D scenes: with 0.3
    the motion mask's recall was 0.97 / 0.48 / 0.79 / 0.89 on four clips, with 0.15 only
    0.97 / 0.20 / 0.51 / 0.48; 0.45 gave the same recall with more false positives. Torr's GRIC
    was tried first and kept H even with 36% parallax outliers on a two-plane scene.
    """
    H, inl_h = fit_homography(pts_a, pts_b, thresh)
    if H is None:
        H, inl_h = np.eye(3), np.zeros(len(pts_a), bool)
    if inl_h.mean() >= 1.0 - f_gain:  # F cannot gain enough: skip the fit
        return StaticModel("H", H, float(inl_h.mean()))
    F, inl_f = fit_fundamental(pts_a, pts_b, thresh)
    if F is None or (inl_f & ~inl_h).mean() <= f_gain:
        return StaticModel("H", H, float(inl_h.mean()))
    return StaticModel("F", F, float(inl_f.mean()))


def normalised_error(model: StaticModel, xa, ya, xb, yb, h: int, w: int) -> np.ndarray:
    """Error of ``model`` (fitted in pixels) in Ro-DynRF units: [-1, 1] coordinates, x ((H+W)/2)^2.

    Coordinate arrays may have any broadcastable shape (points or a dense (H, W) grid).
    """
    S = np.array([[2.0 / w, 0.0, 1.0 / w - 1.0], [0.0, 2.0 / h, 1.0 / h - 1.0], [0.0, 0.0, 1.0]])
    S_inv = np.linalg.inv(S)
    nxa, nya = xa * S[0, 0] + S[0, 2], ya * S[1, 1] + S[1, 2]
    nxb, nyb = xb * S[0, 0] + S[0, 2], yb * S[1, 1] + S[1, 2]
    if model.kind == "F":
        err = _sampson(S_inv.T @ model.matrix @ S_inv, nxa, nya, nxb, nyb)
    else:
        err = _transfer(S @ model.matrix @ S_inv, nxa, nya, nxb, nyb)
    return err * ((h + w) / 2.0) ** 2


def flow_samples(
    flow: np.ndarray, step: int = 4, back_flow: np.ndarray | None = None, max_fb: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Grid samples of a flow field, dropping forward-backward inconsistent ones when ``back_flow``."""
    h, w = flow.shape[:2]
    pa = pixel_grid(h, w, step)
    d = flow[::step, ::step].reshape(-1, 2).astype(np.float64)
    pb = pa + d
    keep = (pb[:, 0] >= 0) & (pb[:, 0] <= w - 1) & (pb[:, 1] >= 0) & (pb[:, 1] <= h - 1)
    if back_flow is not None:
        xi = np.clip(np.rint(pb[:, 0]), 0, w - 1).astype(int)
        yi = np.clip(np.rint(pb[:, 1]), 0, h - 1).astype(int)
        keep &= np.linalg.norm(d + back_flow[yi, xi], axis=1) < max_fb
    if keep.sum() < 50:  # nothing consistent: fit on everything rather than nothing
        keep[:] = True
    return pa[keep], pb[keep]


def flow_residual(
    flow: np.ndarray, back_flow: np.ndarray | None = None, step: int = 4, thresh: float = 1.0, f_gain: float = 0.3
) -> tuple[np.ndarray, StaticModel]:
    """Per-pixel static-scene error of one flow field (Ro-DynRF units, float32) and the model."""
    h, w = flow.shape[:2]
    model = fit_static_model(*flow_samples(flow, step, back_flow), thresh=thresh, f_gain=f_gain)
    xa = np.arange(w, dtype=np.float32)[None, :]
    ya = np.arange(h, dtype=np.float32)[:, None]
    xb, yb = xa + flow[..., 0], ya + flow[..., 1]
    err = normalised_error(model, xa, ya, xb, yb, h, w)
    # Points that leave the view have no match to judge (the camera turned): no evidence.
    err[(xb < 0) | (xb > w - 1) | (yb < 0) | (yb > h - 1)] = 0.0
    return err.astype(np.float32), model


def motion_residual(frame_a: np.ndarray, frame_b: np.ndarray, preset: str = "medium") -> np.ndarray:
    """Per-pixel max of forward and backward Sampson error on ``frame_a``'s grid (Ro-DynRF units).

    The forward error comes from flow a->b; the backward one from flow b->a, pulled back to ``a``
    through the forward flow so both describe the same scene point.
    """
    fwd, bwd = dis_flow(frame_a, frame_b, preset), dis_flow(frame_b, frame_a, preset)
    err_f, _ = flow_residual(fwd, bwd)
    err_b, _ = flow_residual(bwd, fwd)
    return np.maximum(err_f, warp_backward(err_b, fwd, border=0.0))
