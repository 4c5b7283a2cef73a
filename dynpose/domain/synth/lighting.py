"""Lighting: directional sun + sky/ground ambient, with shadows and ambient occlusion baked into
low-resolution lightmaps for the static planar faces (done once per scene, so per-frame shading
only samples them). Moving objects get their shadows by per-frame shadow rays (see render.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from dynpose.domain.synth.raycast import Box, Prim, Quad, Rays, Room, occluded


@dataclass
class Lights:
    sun_dir: np.ndarray  # unit vector towards the sun
    sun_rgb: np.ndarray  # linear irradiance of the sun
    sky_rgb: np.ndarray  # ambient from above
    ground_rgb: np.ndarray  # ambient from below
    indoor: bool = False

    def ambient(self, nz: np.ndarray) -> np.ndarray:
        """Hemispherical ambient for normals with z component ``nz`` -> (K, 3)."""
        w = (0.5 + 0.5 * nz)[:, None]
        return self.sky_rgb[None] * w + self.ground_rgb[None] * (1 - w)


def _hemisphere(n: int, rng: np.random.Generator) -> np.ndarray:
    """Cosine-weighted directions about +z, stratified; (n, 3)."""
    k = int(np.ceil(np.sqrt(n)))
    i, j = np.meshgrid(np.arange(k), np.arange(k))
    u1 = ((i.ravel() + rng.random(k * k)) / k)[:n]
    u2 = ((j.ravel() + rng.random(k * k)) / k)[:n]
    r, phi = np.sqrt(u1), 2 * np.pi * u2
    return np.stack([r * np.cos(phi), r * np.sin(phi), np.sqrt(1 - u1)], 1)


def bake(
    static: list[Prim],
    lights: Lights,
    rng: np.random.Generator,
    tpm: float = 6.0,
    ao_rays: int = 10,
    ao_dist: float = 1.2,
    max_texels: int = 768,
    tile: int = 48,
) -> None:
    """Attach (sun visibility, ambient occlusion) lightmaps to every planar face's Material.

    Faces are processed in tiles of ``tile`` x ``tile`` texels so that only the casters near a
    tile (for occlusion) or in its swept sun volume (for shadows) are tested. Texels inside a
    solid count as occluded, which darkens contact edges instead of leaking light under walls.
    """
    dirs = _hemisphere(ao_rays, rng)
    L = lights.sun_dir / np.linalg.norm(lights.sun_dir)
    bounds = [p.bounds() for p in static]
    z_top = max(b[1][2] for b in bounds if np.isfinite(b[1][2]))
    blo = np.array([b[0] for b in bounds])
    bhi = np.array([b[1] for b in bounds])
    is_caster = np.array([q.casts_shadow for q in static])
    is_room = np.array([isinstance(q, Room) for q in static])

    def overlapping(lo, hi, me, rooms=False):
        """Indices of casters (and rooms, for occlusion) whose bounds overlap the box [lo, hi]."""
        ok = (is_caster | (is_room & rooms)) & np.all(blo <= hi, axis=1) & np.all(bhi >= lo, axis=1)
        ok[me] = False
        return np.nonzero(ok)[0]

    for me, prim in enumerate(static):
        if not isinstance(prim, (Box, Room, Quad)) or prim.tag == "far":
            continue
        prim.material = list(prim.material)  # lightmaps are per face: never share Material objects
        for f, (origin, eu, ev, su, sv, n) in enumerate(prim.face_frames()):
            mat = prim.material[f] if f < len(prim.material) else None
            if (
                mat is None
                or mat.emissive > 0
                or (f == 5 and isinstance(prim, Box) and prim.center[2] - prim.half[2] < 0.05)
            ):
                continue  # emissive, or the bottom of something standing on the ground
            mat = prim.material[f] = replace(mat)
            nu = int(np.clip(np.ceil(su * tpm), 2, max_texels))
            nv = int(np.clip(np.ceil(sv * tpm), 2, max_texels))
            lm = np.ones((nv, nu, 2), np.float32)
            t1 = eu / np.linalg.norm(eu)
            t2 = np.cross(n, t1)
            ao_dirs = [d[0] * t1 + d[1] * t2 + d[2] * n for d in dirs]
            lit = float(np.dot(n, L)) > 0 and L[2] > 0.05
            for j0 in range(0, nv, tile):
                for i0 in range(0, nu, tile):
                    j1, i1 = min(nv, j0 + tile), min(nu, i0 + tile)
                    us = (np.arange(i0, i1) + 0.5) * su / nu
                    vs = (np.arange(j0, j1) + 0.5) * sv / nv
                    uu, vv = np.meshgrid(us, vs)
                    pts = tuple(
                        (origin[a] + uu * eu[a] + vv * ev[a] + 0.02 * n[a]).astype(np.float32) for a in range(3)
                    )
                    flo = np.array([p.min() for p in pts]) - 0.05
                    fhi = np.array([p.max() for p in pts]) + 0.05
                    sun = np.ones(uu.shape, np.float32)
                    if lit:
                        reach = max(0.0, (z_top - flo[2]) / max(L[2], 0.05))
                        slo, shi = np.minimum(flo, flo + reach * L), np.maximum(fhi, fhi + reach * L)
                        cands = [static[k] for k in overlapping(slo, shi, me) if not is_room[k]]
                        if cands:
                            rays = Rays(pts, tuple(float(L[a]) for a in range(3)))  # one direction: scalar maths
                            sun = 1.0 - occluded(cands, rays, np.float32(1e6)).astype(np.float32)
                    near = [static[k] for k in overlapping(flo - ao_dist, fhi + ao_dist, me, rooms=True)]
                    ao = np.ones(uu.shape, np.float32)
                    if near:
                        acc = np.zeros(uu.shape, np.float32)
                        for w in ao_dirs:
                            rays = Rays(pts, tuple(float(w[a]) for a in range(3)))
                            acc += occluded(near, rays, np.float32(ao_dist))
                        ao = 1.0 - 0.85 * acc / len(ao_dirs)
                    lm[j0:j1, i0:i1, 0] = sun
                    lm[j0:j1, i0:i1, 1] = ao
            if min(nu, nv) > 2:
                lm = cv2.GaussianBlur(lm, (0, 0), 0.6)
            mat.lightmap = lm
            mat.lm_tpm = nu / su
            mat.lm_tpm_v = nv / sv
