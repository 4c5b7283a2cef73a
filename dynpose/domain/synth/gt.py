"""Ground-truth static correspondences between frame pairs, from rendered depth and poses.

A pixel (x_i, y_i) of frame i on a static surface is back-projected with its depth, moved into
frame j with the ground-truth poses and projected (pixel-centre convention: the centre of pixel
(0, 0) is at (0, 0)). It is kept when it lands inside frame j, on the same static surface, and is
not occluded there: the inverse depth of frame j interpolated at the landing point must match
the point's own depth (every one of the four neighbouring pixels must be static and on the same
primitive, so edges and occluders, moving or not, reject the match).
"""

from __future__ import annotations

import numpy as np

COLUMNS = ["frame_i", "frame_j", "t_i", "t_j", "x_i", "y_i", "x_j", "y_j", "depth_i"]


def pair_offsets(fps: float, max_dt: float) -> list[int]:
    """Frame offsets from 1 up to max_dt seconds, roughly geometric."""
    kmax = int(np.floor(max_dt * fps + 1e-6))
    ks = sorted({int(round(x)) for x in np.geomspace(1, max(kmax, 1), 9)} | {1, 2, 3})
    return [k for k in ks if 1 <= k <= kmax]


def backproject(cam, x, y, z):
    """Pixels with z-depth -> camera-frame points (3, K)."""
    dcx, dcy, _, _ = cam.rays()
    if cam.xi == 0:
        return np.stack([(x - cam.cx) / cam.fx * z, (y - cam.cy) / cam.fy * z, z])
    xi, yi = np.round(x).astype(int), np.round(y).astype(int)  # integer pixels: use the ray table
    return np.stack([dcx[yi, xi] * z, dcy[yi, xi] * z, z])


def sample_correspondences(
    depth,
    prim,
    obj,
    poses_w2c,
    cams,
    times,
    rng,
    max_dt: float = 2.5,
    per_pair: int = 48,
    fps: float = 12.0,
    rel_tol: float = 0.005,
) -> dict[str, np.ndarray]:
    """Columns of COLUMNS for pairs (i, j), j > i, |t_j - t_i| <= max_dt.

    depth (N, H, W) z-depth with inf/0 for no surface; prim (N, H, W) primitive ids (-1 sky);
    obj (N, H, W) object ids (0 static); cams: per-frame CameraModel.
    """
    n, h, w = depth.shape
    valid = [
        np.nonzero(((obj[k] == 0) & (prim[k] >= 0) & np.isfinite(depth[k]) & (depth[k] > 0)).ravel())[0]
        for k in range(n)
    ]
    cols = {c: [] for c in COLUMNS}
    for i in range(n):
        if len(valid[i]) == 0:
            continue
        for k in pair_offsets(fps, max_dt):
            j = i + k
            if j >= n or times[j] - times[i] > max_dt + 1e-9:
                continue
            pick = valid[i][rng.integers(0, len(valid[i]), 4 * per_pair)]
            yi, xi = np.divmod(pick, w)
            zi = depth[i].ravel()[pick].astype(np.float64)
            pi = prim[i].ravel()[pick]
            xc = backproject(cams[i], xi.astype(np.float64), yi.astype(np.float64), zi)
            r_i, t_i = poses_w2c[i][:, :3], poses_w2c[i][:, 3]
            r_j, t_j = poses_w2c[j][:, :3], poses_w2c[j][:, 3]
            xw = r_i.T @ (xc - t_i[:, None])
            xcj = r_j @ xw + t_j[:, None]
            u, v, front = cams[j].project(xcj)
            ok = front & (u >= 0) & (u <= w - 1.001) & (v >= 0) & (v <= h - 1.001)
            u0 = np.clip(np.floor(u), 0, w - 2).astype(int)
            v0 = np.clip(np.floor(v), 0, h - 2).astype(int)
            fu, fv = u - u0, v - v0
            inv = np.zeros(len(u))
            for dy, dx, wgt in (
                (0, 0, (1 - fu) * (1 - fv)),
                (0, 1, fu * (1 - fv)),
                (1, 0, (1 - fu) * fv),
                (1, 1, fu * fv),
            ):
                zz = depth[j][v0 + dy, u0 + dx].astype(np.float64)
                same = (prim[j][v0 + dy, u0 + dx] == pi) & (obj[j][v0 + dy, u0 + dx] == 0) & np.isfinite(zz) & (zz > 0)
                ok &= same
                inv += wgt * np.where(same, 1.0 / np.where(same, zz, 1.0), 0.0)
            ok &= np.abs(inv * xcj[2] - 1.0) < rel_tol
            sel = np.nonzero(ok)[0][:per_pair]
            if not len(sel):
                continue
            m = len(sel)
            cols["frame_i"].append(np.full(m, i, np.int32))
            cols["frame_j"].append(np.full(m, j, np.int32))
            cols["t_i"].append(np.full(m, times[i]))
            cols["t_j"].append(np.full(m, times[j]))
            cols["x_i"].append(xi[sel].astype(np.float64))
            cols["y_i"].append(yi[sel].astype(np.float64))
            cols["x_j"].append(u[sel])
            cols["y_j"].append(v[sel])
            cols["depth_i"].append(zi[sel])
    out = {}
    for c in COLUMNS:
        dtype = np.int32 if c.startswith("frame") else np.float64
        out[c] = np.concatenate(cols[c]).astype(dtype) if cols[c] else np.zeros(0, dtype)
    return out
