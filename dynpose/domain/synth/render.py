"""Per-frame rendering: z-buffered ray casting with screen-space culling, then shading.

1. Visibility: each primitive is intersected only with the rays inside the screen rectangle of
   its projected bounding box (rays of the whole frame for primitives that straddle the camera
   plane). The camera ray of pixel (u, v) has camera-frame direction ((u-cx)/fx, (v-cy)/fy, 1), so
   the hit parameter is the z-depth and pixel centres sit at integer coordinates.
2. Shading: pixels are grouped by primitive (one argsort); each group computes its surface
   coordinates, samples mip-mapped textures and baked lightmaps, and is lit by the sun (with
   per-frame shadow rays for moving objects) and a hemispherical ambient term.
Output is linear RGB; effects.py turns it into a camera image.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from dynpose.domain.camera import Intrinsics
from dynpose.domain.synth.raycast import INF, Box, Prim, Rays, Room
from dynpose.domain.synth.textures import sample_bilinear

SKY_GAIN = 1.7  # sky radiance relative to a white diffuse surface facing the ambient light


@dataclass(frozen=True)
class CameraModel:
    """Pinhole (xi = 0) or unified camera model (Mei): u = fx * x / (z + xi * |X|) + cx."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    xi: float = 0.0

    def intrinsics(self) -> Intrinsics:
        return Intrinsics(self.fx, self.fy, self.cx, self.cy, self.width, self.height)

    def scaled_focal(self, s: float) -> "CameraModel":
        return CameraModel(self.fx * s, self.fy * s, self.cx, self.cy, self.width, self.height, self.xi)

    def rays(self):
        """Camera-frame ray directions (z = 1) per pixel and a validity mask."""
        key = (self.fx, self.fy, self.cx, self.cy, self.width, self.height, self.xi)
        hit = _RAY_CACHE.get(key)
        if hit is not None:
            return hit
        u = (np.arange(self.width, dtype=np.float64) - self.cx) / self.fx
        v = (np.arange(self.height, dtype=np.float64) - self.cy) / self.fy
        mx, my = np.meshgrid(u, v)
        if self.xi == 0:
            valid = np.ones(mx.shape, bool)
            out = (mx.astype(np.float32), my.astype(np.float32), np.ones_like(mx, np.float32), valid)
        else:
            r2 = mx * mx + my * my
            disc = 1 + (1 - self.xi**2) * r2
            with np.errstate(invalid="ignore"):
                fac = (self.xi + np.sqrt(np.maximum(disc, 0))) / (r2 + 1)
            z = fac - self.xi
            valid = (disc >= 0) & (z > 0.02 * fac)  # keep rays in front of the camera
            zs = np.where(valid, z, 1.0)
            out = (
                np.where(valid, fac * mx / zs, 0).astype(np.float32),
                np.where(valid, fac * my / zs, 0).astype(np.float32),
                np.ones_like(mx, np.float32),
                valid,
            )
        if len(_RAY_CACHE) > 64:
            _RAY_CACHE.clear()
        _RAY_CACHE[key] = out
        return out

    def project(self, xc: np.ndarray):
        """Camera-frame points (3, N) -> pixel coordinates u, v and a 'in front' flag."""
        x, y, z = xc
        if self.xi == 0:
            with np.errstate(divide="ignore", invalid="ignore"):
                return self.fx * x / z + self.cx, self.fy * y / z + self.cy, z > 1e-6
        d = np.sqrt(x * x + y * y + z * z)
        den = z + self.xi * d
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.fx * x / den + self.cx, self.fy * y / den + self.cy, (den > 1e-6) & (z > 0.02 * d)


_RAY_CACHE: dict = {}
# The 12 edges of a box whose corners are ordered as in Renderer._rect (index = 4x + 2y + z).
_EDGES = np.array([(i, j) for i in range(8) for j in range(i + 1, 8) if bin(i ^ j).count("1") == 1])


@dataclass
class Frame:
    linear: np.ndarray  # (H, W, 3) float32 linear radiance
    depth: np.ndarray  # (H, W) float32 z-depth, inf where no surface
    prim: np.ndarray  # (H, W) int16 index into static + dynamic prims, -1 sky, -2 outside the lens
    obj: np.ndarray  # (H, W) uint16 object id (0 static)
    motion: np.ndarray | None = None  # (2, H, W) screen displacement over the shutter interval
    albedo: np.ndarray | None = None  # (H, W, 3) for the cartoon look
    shade: np.ndarray | None = None  # (H, W) grey light level for the cartoon look


class Renderer:
    def __init__(self, scene):
        self.scene = scene
        self.static = scene.static
        self.static_bounds = [p.bounds() for p in self.static]
        self.always_full = [
            isinstance(p, Room) or not np.all(np.isfinite(b[0])) for p, b in zip(self.static, self.static_bounds)
        ]
        self.timings: dict[str, float] = {}  # seconds spent per stage, accumulated over frames
        # Static shadow casters projected along the sun direction: a caster can only shade an
        # object if their footprints on a plane perpendicular to the sun overlap.
        L = scene.lights.sun_dir / np.linalg.norm(scene.lights.sun_dir)
        e1 = np.cross(L, [0.0, 0.0, 1.0]) if abs(L[2]) < 0.99 else np.array([1.0, 0.0, 0.0])
        e1 /= np.linalg.norm(e1)
        self.sun_basis = np.stack([e1, np.cross(L, e1), L])  # rows
        self.casters = []
        for p, (lo, hi) in zip(self.static, self.static_bounds):
            if p.casts_shadow and not isinstance(p, Room) and np.all(np.isfinite(lo)):
                self.casters.append((p, self._sun_footprint(lo, hi)))

    def _sun_footprint(self, lo, hi):
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        q = corners @ self.sun_basis.T
        return q.min(0), q.max(0)

    def _tick(self, name: str, t0: float) -> float:
        t = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + t - t0
        return t

    # ------------------------------------------------------------------ visibility
    def _rect(self, bounds, rot, center, cam: CameraModel, full: bool):
        """Screen rectangle (x0, y0, x1, y1) containing the projection of an axis-aligned box, or
        None when it is entirely behind the camera or off screen. The box is clipped against
        the near plane first, so long walls and roads beside the camera get tight rectangles."""
        W, H = cam.width, cam.height
        if full:
            return 0, 0, W, H
        lo, hi = bounds
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        xc = (corners - center) @ rot  # world -> camera (rot is camera-to-world)
        near = 0.02
        front = xc[:, 2] >= near
        if not front.any():
            return None
        if not front.all():
            a, b = xc[_EDGES[:, 0]], xc[_EDGES[:, 1]]
            cross = (a[:, 2] >= near) != (b[:, 2] >= near)
            a, b = a[cross], b[cross]
            f = ((near - a[:, 2]) / (b[:, 2] - a[:, 2]))[:, None]
            xc = np.concatenate([xc[front], a + f * (b - a)])
        if cam.xi:
            # Edges of a box bend under the fisheye projection: bound samples along them instead.
            # (Clipped polytope vertices -> sample all pairs; few points, a few pixels of margin.)
            s = np.linspace(0, 1, 7)[:, None, None]
            pts = (xc[None, :, :] * (1 - s) + xc[None, [0], :] * s).reshape(-1, 3)
            pts = np.concatenate(
                [pts] + [(xc[None, :, :] * (1 - s) + xc[None, [k], :] * s).reshape(-1, 3) for k in range(1, len(xc))]
            )
            u, v, _ = cam.project(pts.T)
            pad = 3
        else:
            u = cam.fx * xc[:, 0] / xc[:, 2] + cam.cx
            v = cam.fy * xc[:, 1] / xc[:, 2] + cam.cy
            pad = 0
        x0, x1 = max(0, int(math.floor(u.min())) - 1 - pad), min(W, int(math.ceil(u.max())) + 2 + pad)
        y0, y1 = max(0, int(math.floor(v.min())) - 1 - pad), min(H, int(math.ceil(v.max())) + 2 + pad)
        if x0 >= x1 or y0 >= y1:
            return None
        return x0, y0, x1, y1

    def _rects(self, bounds: list, rot, center, cam: CameraModel, full: list) -> list:
        """_rect for many boxes at once: vectorised for boxes fully in front of the camera, the
        few that straddle the near plane (or a fisheye lens) take the per-box path."""
        n = len(bounds)
        if n == 0:
            return []
        lo = np.array([b[0] for b in bounds])
        hi = np.array([b[1] for b in bounds])
        finite = np.all(np.isfinite(lo), axis=1) & np.all(np.isfinite(hi), axis=1)
        lo, hi = np.where(finite[:, None], lo, 0), np.where(finite[:, None], hi, 0)
        sel = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)])  # (8, 3): pick lo or hi
        corners = np.where(sel[None].astype(bool), hi[:, None, :], lo[:, None, :])  # (n, 8, 3)
        xc = (corners - center) @ rot
        z = xc[..., 2]
        ahead = np.all(z >= 0.02, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            u = cam.fx * xc[..., 0] / z + cam.cx
            v = cam.fy * xc[..., 1] / z + cam.cy
        x0 = np.maximum(0, np.floor(u.min(1)) - 1)
        x1 = np.minimum(cam.width, np.ceil(u.max(1)) + 2)
        y0 = np.maximum(0, np.floor(v.min(1)) - 1)
        y1 = np.minimum(cam.height, np.ceil(v.max(1)) + 2)
        out = []
        for i in range(n):
            if full[i] or not finite[i] or cam.xi:
                out.append(self._rect(bounds[i], rot, center, cam, full[i] or not finite[i]))
            elif ahead[i]:
                out.append(
                    (int(x0[i]), int(y0[i]), int(x1[i]), int(y1[i])) if x0[i] < x1[i] and y0[i] < y1[i] else None
                )
            else:
                out.append(self._rect(bounds[i], rot, center, cam, False))
        return out

    def visibility(self, cam: CameraModel, rot: np.ndarray, center: np.ndarray, dyn: list[Prim]):
        """(depth, prim index, world rays) for one view; prims = static + dyn."""
        dcx, dcy, dcz, valid = cam.rays()
        r = rot.astype(np.float32)
        d = tuple(r[a, 0] * dcx + r[a, 1] * dcy + r[a, 2] * dcz for a in range(3))
        rays = Rays(tuple(float(c) for c in center), d)
        _ = rays.inv  # computed once for the full frame; rect views slice it
        H, W = cam.height, cam.width
        depth = np.full((H, W), INF, np.float32)
        pid = np.full((H, W), -1, np.int16)
        prims = self.static + dyn
        bounds = self.static_bounds + [p.bounds() for p in dyn]
        full = self.always_full + [False] * len(dyn)
        for i, (p, rect) in enumerate(zip(prims, self._rects(bounds, rot, center, cam, full))):
            if rect is None:
                continue
            x0, y0, x1, y1 = rect
            sl = (slice(y0, y1), slice(x0, x1))
            t = p.intersect(rays.sub(sl))
            dv = depth[sl]
            closer = t < dv
            np.copyto(dv, t, where=closer)
            pid[sl][closer] = i
        if cam.xi:
            depth[~valid] = INF
            pid[~valid] = -2
        return depth, pid, rays, prims

    # ------------------------------------------------------------------ shading
    def render(
        self, cam: CameraModel, pose, dyn: list[Prim], blur=None, flat: bool = False, shadows: bool = True
    ) -> Frame:
        """Render one frame. ``pose`` = (rot c2w, centre). ``blur`` = (cam, pose, dyn) at the start
        and at the end of the shutter interval, for motion vectors.

        Shading works in "sorted order": pixels sorted by primitive, so every primitive's pixels
        are one contiguous slice; results are scattered back to pixel order once at the end."""
        rot, center = pose
        t0 = time.perf_counter()
        depth, pid, rays, prims = self.visibility(cam, rot, center, dyn)
        t0 = self._tick("visibility", t0)
        H, W = depth.shape
        n_static = len(self.static)
        lights = self.scene.lights
        L = (lights.sun_dir / np.linalg.norm(lights.sun_dir)).astype(np.float32)
        flat_pid = pid.ravel()
        order = np.argsort(flat_pid, kind="stable")
        counts = np.bincount(flat_pid.astype(np.int64) + 2, minlength=len(prims) + 2)
        starts = np.concatenate([[0], np.cumsum(counts)])
        first = int(starts[2])  # pixels before this are sky / outside the lens
        ts = depth.ravel()[order]
        dx, dy, dz = (c.ravel()[order] for c in rays.d)
        o = rays.o
        with np.errstate(invalid="ignore"):
            px, py, pz = o[0] + ts * dx, o[1] + ts * dy, o[2] + ts * dz
        n_pix = H * W
        alb = np.zeros((n_pix, 3), np.float32)
        nz = np.zeros(n_pix, np.float32)
        ao = np.ones(n_pix, np.float32)
        ndl = np.zeros(n_pix, np.float32)
        spec = np.zeros(n_pix, np.float32)
        emis = np.zeros(n_pix, np.float32)
        obj = np.zeros(n_pix, np.uint16)
        moved = None
        if blur is not None:
            moved = [np.stack([px, py, pz]), np.stack([px, py, pz])]
        f_px = 0.5 * (cam.fx + cam.fy)
        for i in np.nonzero(counts[2:])[0]:
            s, e = int(starts[i + 2]), int(starts[i + 3])
            prim = prims[i]
            sl = slice(s, e)
            tt, gx, gy, gz = ts[sl], dx[sl], dy[sl], dz[sl]
            n, face, u, v = prim.surface(px[sl], py[sl], pz[sl])
            nd = n[0] * gx + n[1] * gy + n[2] * gz
            if (nd > 0).any():  # two-sided surfaces: face the viewer
                n = np.where((nd > 0)[None], -n, n)
                nd = -np.abs(nd)
            dlen = np.sqrt(gx * gx + gy * gy + gz * gz)
            cos = -nd / dlen
            # Texel footprint along the most compressed direction (no anisotropic filtering: blur
            # slightly at grazing angles rather than alias).
            foot = tt * dlen / (f_px * np.maximum(cos, 0.08) ** 0.8)
            nz[sl] = n[2]
            ndl[sl] = np.maximum(n[0] * L[0] + n[1] * L[1] + n[2] * L[2], 0)
            mats = prim.material
            faces = [0] if len(mats) == 1 else np.unique(face)
            for f in faces:
                m = mats[int(f)]
                sub = slice(None) if len(faces) == 1 else np.nonzero(face == f)[0]
                if flat:
                    col = _cartoon_color(m.tex.mean[:3])
                else:
                    lod = np.log2(np.maximum(foot[sub] * m.density, 1e-6)) + 0.25
                    col = m.tex.sample(u[sub] * m.u_scale + m.u_off, v[sub] * m.v_scale + m.v_off, lod)[:, :3]
                alb[sl][sub] = col
                if m.emissive > 0:
                    emis[sl][sub] = m.emissive
                    continue
                if m.lightmap is not None:
                    lm = _sample_lightmap(m, u[sub], v[sub])
                    ndl[sl][sub] *= lm[:, 0]
                    ao[sl][sub] = lm[:, 1]
                if m.shininess > 0:
                    gxs, gys, gzs, dl = gx[sub], gy[sub], gz[sub], dlen[sub]
                    hx, hy, hz = L[0] - gxs / dl, L[1] - gys / dl, L[2] - gzs / dl
                    hn = np.sqrt(hx * hx + hy * hy + hz * hz) + 1e-6
                    nh = np.maximum((n[0][sub] * hx + n[1][sub] * hy + n[2][sub] * hz) / hn, 0)
                    spec[sl][sub] = m.shininess * nh**24 * 0.5
            if prim.obj_id:
                obj[sl] = prim.obj_id
            if blur is not None and i >= n_static:
                j = i - n_static
                p3 = np.stack([px[sl], py[sl], pz[sl]])
                moved[0][:, sl] = prim.moved(p3, blur[0][2][j])
                moved[1][:, sl] = prim.moved(p3, blur[1][2][j])
        t0 = self._tick("shading", t0)
        if shadows and dyn:
            rank = np.empty(n_pix, np.int64)
            rank[order] = np.arange(n_pix)
            self._dynamic_shadows(cam, rot, center, dyn, n_static, flat_pid, depth, rays, ndl, rank, L)
        t0 = self._tick("shadows", t0)
        w = (0.5 + 0.5 * nz)[:, None]
        light = (
            lights.sky_rgb.astype(np.float32)[None] * w + lights.ground_rgb.astype(np.float32)[None] * (1 - w)
        ) * ao[:, None]
        light += ndl[:, None] * lights.sun_rgb.astype(np.float32)[None]
        if emis.any():
            em = emis > 0
            light[em] = emis[em, None]
        lin_s = alb * light
        if spec.any():
            lin_s += (spec * ndl)[:, None] * lights.sun_rgb.astype(np.float32)[None]
        n_sky = int(starts[2] - starts[1])
        if n_sky and self.scene.sky is not None:
            sk = slice(int(starts[1]), first)
            lin_s[sk] = (
                self._sky(self.scene.sky, (dx[sk], dy[sk], dz[sk])) * SKY_GAIN * float(np.mean(lights.sky_rgb) / 0.6)
            )
        linear = np.empty((n_pix, 3), np.float32)
        linear[order] = lin_s
        obj_px = np.empty(n_pix, np.uint16)
        obj_px[order] = obj
        motion = None
        if blur is not None:
            motion = np.zeros((2, n_pix), np.float32)
            motion[:, order] = self._motion(rays, (dx, dy, dz), first, moved, blur)
        albedo = shade = None
        if flat:
            albedo = np.empty((n_pix, 3), np.float32)
            albedo[order] = alb
            shade = np.empty(n_pix, np.float32)
            shade[order] = light.mean(1)
            albedo, shade = albedo.reshape(H, W, 3), shade.reshape(H, W)
        self._tick("compose", t0)
        return Frame(
            linear.reshape(H, W, 3),
            depth,
            pid,
            obj_px.reshape(H, W),
            None if motion is None else motion.reshape(2, H, W),
            albedo,
            shade,
        )

    def _sky(self, sky, d):
        dx, dy, dz = d
        r = np.sqrt(dx * dx + dy * dy + dz * dz)
        az = np.arctan2(dy, dx) / (2 * np.pi) + 0.5
        el = np.arcsin(np.clip(dz / r, -1, 1))
        v = np.clip(1 - el / (np.pi / 2), 0, 1)
        return sky.sample(az * sky.w, v * (sky.h - 1) + 0.5, np.full(len(az), 1.0, np.float32))[:, :3]

    def _dynamic_shadows(self, cam, rot, center, dyn, n_static, flat_pid, depth, rays, ndl, rank, L):
        """Shadows cast by moving objects (on everything) and received by them from the scene.
        ``ndl`` (sun term) is in sorted order; ``rank`` maps pixel index -> sorted index."""
        H, W = depth.shape
        by_obj: dict[int, list[int]] = {}
        for j, p in enumerate(dyn):
            by_obj.setdefault(p.obj_id, []).append(j)
        tflat = depth.ravel()
        for _oid, js in by_obj.items():
            ps = [dyn[j] for j in js]
            own_ids = [n_static + j for j in js]
            lo = np.min([p.bounds()[0] for p in ps], 0)
            hi = np.max([p.bounds()[1] for p in ps], 0)
            reach = (hi[2] + 0.1) / max(L[2], 0.08)
            sweep_lo = np.minimum(lo, lo - reach * L)
            sweep_hi = np.maximum(hi, hi - reach * L)
            # (a) points that this object may shade: in its bbox swept away from the sun.
            rect = self._rect((sweep_lo, sweep_hi), rot, center, cam, False)
            if rect is not None:
                x0, y0, x1, y1 = rect
                yy, xx = np.mgrid[y0:y1, x0:x1]
                cand = (yy * W + xx).ravel()
                pc = flat_pid[cand]
                cand = cand[(pc >= 0) & ~np.isin(pc, own_ids)]
                cand = cand[ndl[rank[cand]] > 0]
                if len(cand):
                    srays = self._shadow_rays(rays, tflat, cand, L)
                    # Cheap pre-test against the object's bounding box, then its parts.
                    near = Box((lo + hi) / 2, (hi - lo) / 2 + 1e-3).intersect(srays) < INF
                    cand = cand[near]
                    if len(cand):
                        srays = srays.sub(near)
                        hit = np.zeros(len(cand), bool)
                        for p in ps:
                            hit |= p.intersect(srays) < INF
                        ndl[rank[cand[hit]]] = 0.0
            # (b) this object's own pixels in the shadow of static casters near its sun ray.
            qlo, qhi = self._sun_footprint(lo, hi)
            casters = [
                p
                for p, (clo, chi) in self.casters
                if clo[0] <= qhi[0] and qlo[0] <= chi[0] and clo[1] <= qhi[1] and qlo[1] <= chi[1] and chi[2] > qlo[2]
            ]
            if not casters:
                continue
            rect = self._rect((lo, hi), rot, center, cam, False)
            if rect is None:
                continue
            x0, y0, x1, y1 = rect
            yy, xx = np.mgrid[y0:y1, x0:x1]
            cand = (yy * W + xx).ravel()
            cand = cand[np.isin(flat_pid[cand], own_ids)]
            cand = cand[ndl[rank[cand]] > 0]
            if not len(cand):
                continue
            srays = self._shadow_rays(rays, tflat, cand, L)
            hit = np.zeros(len(cand), bool)
            for p in casters:
                hit |= p.intersect(srays) < INF
            ndl[rank[cand[hit]]] = 0.0

    @staticmethod
    def _shadow_rays(rays, tflat, cand, L):
        t = tflat[cand]
        o = tuple((rays.o[a] + t * rays.d[a].ravel()[cand] + 0.01 * L[a]).astype(np.float32) for a in range(3))
        return Rays(o, tuple(np.full(len(cand), L[a], np.float32) for a in range(3)))

    def _motion(self, rays, d_sorted, first, moved, blur):
        """Screen displacement (sorted order) of each pixel's surface point between shutter open
        and close; sky pixels (before ``first``) are directions at infinity."""
        out = []
        for (cam_k, (rot_k, c_k), _), pts in zip(blur, moved):
            if first:
                for a in range(3):
                    pts[a, :first] = rays.o[a] + 1e4 * d_sorted[a][:first]
            xc = rot_k.T.astype(np.float32) @ (pts - c_k.astype(np.float32)[:, None])
            out.append(cam_k.project(xc))
        (u0, v0, ok0), (u1, v1, ok1) = out
        with np.errstate(invalid="ignore"):
            ok = ok0 & ok1 & np.isfinite(u0) & np.isfinite(u1)
            return np.stack([np.where(ok, u1 - u0, 0), np.where(ok, v1 - v0, 0)]).astype(np.float32)


_TOON = (
    np.array(
        [
            [0.9, 0.3, 0.2],
            [0.95, 0.75, 0.2],
            [0.3, 0.7, 0.3],
            [0.25, 0.45, 0.85],
            [0.7, 0.35, 0.75],
            [0.95, 0.55, 0.6],
            [0.4, 0.8, 0.8],
            [0.85, 0.85, 0.8],
        ],
        np.float32,
    )
    ** 2.2
)


def _cartoon_color(mean_linear: np.ndarray) -> np.ndarray:
    """Flat colour for the cartoon look: the texture's mean, pushed towards a vivid palette colour
    chosen deterministically from that mean (grey textures would otherwise stay grey)."""
    k = int(np.sum(mean_linear) * 7919 * 1000) % len(_TOON)
    return (0.4 * mean_linear + 0.6 * _TOON[k]).astype(np.float32)


def _sample_lightmap(m, u, v):
    return sample_bilinear(m.lightmap, u * m.lm_tpm - 0.5, v * m.lm_tpm_v - 0.5)
