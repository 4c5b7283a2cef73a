"""Uncertainty-weighted refinement (AnyCam, appendix D), on a COLMAP reconstruction.

AnyCam accumulates an uncertainty along each track, ignores observations above a maximum and
weights the others linearly in its final bundle adjustment. Our uncertainty of an observation, in
pixels, accumulates what we know makes it unreliable:

- the track's motion level ``gamma`` (TracksTo4D, ``motion_level.py``): how badly one static 3-D
  point explains the whole track;
- drift: LK tracks drift about ``drift`` px per frame away from their query frame
  (docs/annotation.md, "Track precision");
- proximity to the dynamic masks: ``mask_px`` at a mask border, falling linearly to 0 at
  ``mask_reach`` px away (occlusion boundaries and mask under-segmentation sit there).

weight = max(0, 1 - sigma / sigma_max). pycolmap's bundle adjuster has no per-observation weight
(and pyceres cannot reach its cost functions), so the weighted problem is solved with
``scipy.optimize.least_squares`` (sparse Jacobian by grouped finite differences): poses of the
registered images, the 3-D points and the shared focal (and ``k1`` for SIMPLE_RADIAL), the
principal point fixed, the first registered image fixed for the gauge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares
from scipy.sparse import lil_matrix
from scipy.spatial.transform import Rotation


@dataclass
class Observations:
    """Every observation of a reconstruction's 3-D points, as arrays."""

    image: np.ndarray  # (M,) index into ``image_ids``
    point: np.ndarray  # (M,) index into ``point_ids``
    xy: np.ndarray  # (M, 2) COLMAP pixel coordinates
    point2d: np.ndarray  # (M,) the observation's index in its image's points2D
    image_ids: list[int]
    point_ids: list[int]


def observations(rec) -> Observations:
    image_ids = [i for i, im in rec.images.items() if im.has_pose]
    index = {i: k for k, i in enumerate(image_ids)}
    point_ids = list(rec.points3D.keys())
    img, pt, xy, p2d = [], [], [], []
    for j, pid in enumerate(point_ids):
        for el in rec.points3D[pid].track.elements:
            if el.image_id not in index:
                continue
            img.append(index[el.image_id])
            pt.append(j)
            p2d.append(el.point2D_idx)
            xy.append(rec.images[el.image_id].points2D[el.point2D_idx].xy)
    return Observations(
        np.asarray(img, np.int64),
        np.asarray(pt, np.int64),
        np.asarray(xy, np.float64).reshape(-1, 2),
        np.asarray(p2d, np.int64),
        image_ids,
        point_ids,
    )


def uncertainty(
    gamma: np.ndarray,
    age: np.ndarray,
    mask_distance: np.ndarray | None,
    drift: float,
    mask_px: float,
    mask_reach: float,
) -> np.ndarray:
    """Per observation, sigma (px): the track's gamma + drift x frames from its query frame + mask proximity.

    ``gamma`` NaN (too short to fit) counts as 0; ``mask_distance`` (px to the nearest masked pixel,
    None: no masks)."""
    sigma = np.nan_to_num(np.asarray(gamma, np.float64), nan=0.0) + drift * np.abs(age)
    if mask_distance is not None and mask_reach > 0:
        sigma = sigma + mask_px * np.clip(1.0 - np.asarray(mask_distance, np.float64) / mask_reach, 0.0, 1.0)
    return sigma


def linear_weights(sigma: np.ndarray, sigma_max: float) -> np.ndarray:
    """AnyCam's weighting: 1 at zero uncertainty, falling linearly to 0 at ``sigma_max`` (ignored above)."""
    return np.clip(1.0 - np.asarray(sigma, np.float64) / sigma_max, 0.0, 1.0)


def _project(rvec, tvec, X, f, k1, c, img, pt):
    R = Rotation.from_rotvec(rvec).as_matrix()  # (I, 3, 3)
    Xc = np.einsum("mij,mj->mi", R[img], X[pt]) + tvec[img]
    z = Xc[:, 2:3]
    xn = Xc[:, :2] / np.where(np.abs(z) < 1e-9, 1e-9, z)
    r2 = np.sum(xn * xn, axis=1, keepdims=True)
    return f * xn * (1.0 + k1 * r2) + c


def weighted_bundle_adjustment(
    rec, obs: Observations, weights: np.ndarray, loss: str = "linear", loss_scale: float = 1.0, max_nfev: int = 30
) -> dict:
    """Refine ``rec`` in place minimising sum rho((w_i r_i)^2) over observations with w_i > 0.

    Observations with weight 0 are deleted from ``rec`` (a point left with fewer than two is
    deleted with them). Returns a summary: initial / final weighted RMS (px), observations used,
    points, iterations."""
    cam_id = rec.images[obs.image_ids[0]].camera_id
    cam = rec.cameras[cam_id]
    radial = cam.model.name == "SIMPLE_RADIAL"
    params = np.asarray(cam.params, np.float64)
    c = params[1:3]
    keep = weights > 0
    for i in np.flatnonzero(~keep):  # AnyCam ignores observations above the maximum uncertainty
        image_id = obs.image_ids[obs.image[i]]
        if rec.images[image_id].points2D[obs.point2d[i]].has_point3D():
            rec.delete_observation(image_id, int(obs.point2d[i]))
    alive = [k for k, pid in enumerate(obs.point_ids) if rec.exists_point3D(pid)]
    remap = -np.ones(len(obs.point_ids), np.int64)
    remap[alive] = np.arange(len(alive))
    keep &= remap[obs.point] >= 0
    img, pt, xy, w = obs.image[keep], remap[obs.point[keep]], obs.xy[keep], weights[keep]
    n_img, n_pt = len(obs.image_ids), len(alive)
    if n_pt == 0 or len(img) == 0:
        return {"observations": 0, "points": 0}

    rvec0 = np.zeros((n_img, 3))
    tvec0 = np.zeros((n_img, 3))
    for k, image_id in enumerate(obs.image_ids):
        pose = rec.images[image_id].cam_from_world()
        rvec0[k] = Rotation.from_matrix(pose.rotation.matrix()).as_rotvec()
        tvec0[k] = pose.translation
    X0 = np.array([rec.points3D[obs.point_ids[k]].xyz for k in alive], np.float64)
    intr0 = np.array([params[0], params[3] if radial else 0.0])
    n_intr = 2 if radial else 1
    # the first image is the gauge: its pose is not a variable
    x0 = np.concatenate([rvec0[1:].ravel(), tvec0[1:].ravel(), X0.ravel(), intr0[:n_intr]])
    n_pose = (n_img - 1) * 3

    def unpack(x):
        rvec = np.vstack([rvec0[:1], x[:n_pose].reshape(-1, 3)])
        tvec = np.vstack([tvec0[:1], x[n_pose : 2 * n_pose].reshape(-1, 3)])
        X = x[2 * n_pose : 2 * n_pose + 3 * n_pt].reshape(-1, 3)
        f = x[2 * n_pose + 3 * n_pt]
        k1 = x[2 * n_pose + 3 * n_pt + 1] if radial else 0.0
        return rvec, tvec, X, f, k1

    def residuals(x):
        rvec, tvec, X, f, k1 = unpack(x)
        return ((_project(rvec, tvec, X, f, k1, c, img, pt) - xy) * w[:, None]).ravel()

    m = len(img)
    sparsity = lil_matrix((2 * m, len(x0)), dtype=np.int8)
    rows = np.arange(m)
    for axis in range(2):
        r = 2 * rows + axis
        has_pose = img > 0
        for j in range(3):
            sparsity[r[has_pose], (img[has_pose] - 1) * 3 + j] = 1
            sparsity[r[has_pose], n_pose + (img[has_pose] - 1) * 3 + j] = 1
            sparsity[r, 2 * n_pose + pt * 3 + j] = 1
        for j in range(n_intr):
            sparsity[r, 2 * n_pose + 3 * n_pt + j] = 1
    r0 = residuals(x0)
    sol = least_squares(
        residuals,
        x0,
        jac_sparsity=sparsity.tocsr(),
        method="trf",
        x_scale="jac",
        loss=loss,
        f_scale=loss_scale,
        tr_solver="lsmr",
        tr_options={"maxiter": 100},  # inexact steps: the start is already a BA optimum, close to this one
        max_nfev=max_nfev,
    )
    rvec, tvec, X, f, k1 = unpack(sol.x)
    import pycolmap

    for k, image_id in enumerate(obs.image_ids):
        # a trivial frame: the rig's pose is the camera's
        rec.images[image_id].frame.rig_from_world = pycolmap.Rigid3d(pycolmap.Rotation3d(rvec[k]), tvec[k])
    for k, j in enumerate(alive):
        rec.points3D[obs.point_ids[j]].xyz = X[k]
    params = params.copy()
    params[0] = f
    if radial:
        params[3] = k1
    cam.params = params
    return {
        "observations": int(m),
        "points": int(n_pt),
        "ignored_observations": int((~(weights > 0)).sum()),
        "rms_before_px": float(np.sqrt(np.mean(r0**2))),
        "rms_after_px": float(np.sqrt(np.mean(sol.fun**2))),
        "evaluations": int(sol.nfev),
    }
