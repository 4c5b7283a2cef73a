"""Analytic primitives and vectorised ray casting.

Rays are given as an origin ``o`` (3 scalars for a pinhole camera, or 3 arrays) and a direction
``d`` (3 arrays of any common shape). Directions need not be unit length: for camera rays we use
directions with camera-z component 1, so the ray parameter ``t`` *is* the z-depth. Misses are
``inf``. Only hits from outside count (except :class:`Room`, seen from inside).

Each primitive also knows its surface: ``surface(px, py, pz)`` gives normals, a face index and
texture coordinates in metres for world points on it, and ``moved(points, other)`` maps points
on this primitive to the same material points on ``other`` (the same primitive at another time),
which the motion-blur and shadow code use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NEAR = np.float32(1e-3)
INF = np.float32(np.inf)


def safe_inverse(d) -> np.ndarray:
    """1/d for slab tests; an exactly axis-parallel component gives inf, which the slab test
    handles (it uses fmin/fmax, so the rare 0 * inf = NaN is ignored rather than propagated)."""
    with np.errstate(divide="ignore"):
        return np.reciprocal(np.asarray(d, np.float32))


@dataclass
class Rays:
    """A batch of rays. ``o`` and ``d`` entries are floats or arrays of one common shape: a shared
    origin (camera rays) or a shared direction (shadow and occlusion rays) keeps the maths scalar."""

    o: tuple
    d: tuple
    _inv: tuple | None = None
    _dd: np.ndarray | None = None

    @property
    def inv(self):
        if self._inv is None:
            self._inv = tuple(safe_inverse(c) for c in self.d)
        return self._inv

    @property
    def dd(self):
        if self._dd is None:
            dx, dy, dz = self.d
            self._dd = dx * dx + dy * dy + dz * dz
        return self._dd

    @property
    def shape(self) -> tuple:
        return np.broadcast(*self.o, *self.d).shape

    def sub(self, sl) -> "Rays":
        """Rays of a slice/index of the batch (origins shared when scalar)."""

        def cut(c):
            return c if np.ndim(c) == 0 else c[sl]

        r = Rays(tuple(cut(c) for c in self.o), tuple(cut(c) for c in self.d))
        if self._inv is not None:
            r._inv = tuple(cut(c) for c in self._inv)
        if self._dd is not None:
            r._dd = cut(self._dd)
        return r


def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _sub(a, b):
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


@dataclass(eq=False)
class Prim:
    """Base class. ``obj_id`` 0 is the static scene; ``material`` maps face index -> Material."""

    obj_id: int = field(default=0, kw_only=True)
    material: object = field(default=None, kw_only=True)
    casts_shadow: bool = field(default=True, kw_only=True)
    tag: str = field(default="", kw_only=True)

    def intersect(self, rays: Rays) -> np.ndarray:
        raise NotImplementedError

    def blocks(self, rays: Rays, t_max) -> np.ndarray:
        """Whether the segment [0, t_max] of each ray touches the solid (origins inside count)."""
        return self.intersect(rays) < t_max

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def surface(self, px, py, pz):
        """(normal (3,K), face (K,) int8, u (K,), v (K,)) for points on the surface."""
        raise NotImplementedError

    def moved(self, p: np.ndarray, other: "Prim") -> np.ndarray:
        """Points (3,K) on self -> the same material points on ``other``."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Boxes


# Per face: (axis, sign); faces 0..5 = +x, -x, +y, -y, +z, -z.
_FACES = [(0, 1), (0, -1), (1, 1), (1, -1), (2, 1), (2, -1)]


def _slab(rays: Rays, lo, hi, o_local=None, d_local=None, inv_local=None):
    """Entry/exit parameters of an axis-aligned box."""
    o = rays.o if o_local is None else o_local
    inv = rays.inv if inv_local is None else inv_local
    tmin = tmax = None
    with np.errstate(invalid="ignore"):
        for a in range(3):
            t1 = (lo[a] - o[a]) * inv[a]
            t2 = (hi[a] - o[a]) * inv[a]
            lo_a = np.fmin(t1, t2)
            hi_a = np.fmax(t1, t2)
            if tmin is None:
                tmin, tmax = lo_a, hi_a
            else:
                np.fmax(tmin, lo_a, out=tmin)
                np.fmin(tmax, hi_a, out=tmax)
    return tmin, tmax


def _box_face_uv(lx, ly, lz, half):
    """Face index and metric texture coordinates for points on a box surface (local frame).

    Vertical faces: u runs along the face to the right of a viewer outside, v downwards from the
    top edge, so textures appear upright and unmirrored. Horizontal faces: u along x, v along y.
    """
    hx, hy, hz = half
    rx, ry, rz = np.abs(lx) / hx, np.abs(ly) / hy, np.abs(lz) / hz
    ax = np.where(rx >= ry, np.where(rx >= rz, 0, 2), np.where(ry >= rz, 1, 2)).astype(np.int8)
    sgn = np.where(ax == 0, lx, np.where(ax == 1, ly, lz)) >= 0
    face = (ax * 2 + (~sgn)).astype(np.int8)
    u = np.empty_like(lx)
    v = np.empty_like(lx)
    top = hz - lz
    for f, (a, s) in enumerate(_FACES):
        m = face == f
        if not m.any():
            continue
        if a == 0:  # normal +-x: right of the viewer is +-y
            u[m] = (hy + ly[m]) if s > 0 else (hy - ly[m])
            v[m] = top[m]
        elif a == 1:  # normal +-y: right of the viewer is -+x
            u[m] = (hx - lx[m]) if s > 0 else (hx + lx[m])
            v[m] = top[m]
        else:
            u[m] = hx + lx[m]
            v[m] = (hy - ly[m]) if s > 0 else (hy + ly[m])
    return face, u, v


def _box_frames(half):
    """Local-frame face frames matching _box_face_uv (see Box.face_frames)."""
    hx, hy, hz = half
    out = []
    for a, s in _FACES:
        if a == 0:
            o, eu, ev, su, sv = (s * hx, -s * hy, hz), (0, s, 0), (0, 0, -1), 2 * hy, 2 * hz
        elif a == 1:
            o, eu, ev, su, sv = (s * hx, s * hy, hz), (-s, 0, 0), (0, 0, -1), 2 * hx, 2 * hz
        else:
            o, eu, ev, su, sv = (-hx, s * hy, s * hz), (1, 0, 0), (0, -s, 0), 2 * hx, 2 * hy
        n = np.zeros(3)
        n[a] = s
        out.append((np.array(o, float), np.array(eu, float), np.array(ev, float), su, sv, n))
    return out


@dataclass(eq=False)
class Box(Prim):
    """Oriented box: centre, half sizes, rotation (columns = box axes in world)."""

    center: np.ndarray
    half: np.ndarray
    rot: np.ndarray | None = None  # None = axis aligned

    def __post_init__(self):
        self.center = np.asarray(self.center, np.float64)
        self.half = np.asarray(self.half, np.float64)
        self.perm = None
        if self.rot is not None:
            self.rot = np.asarray(self.rot, np.float64)
            if np.allclose(self.rot, np.eye(3)):
                self.rot = None
            elif np.allclose(np.abs(self.rot), np.round(np.abs(self.rot)), atol=1e-9):
                # Turned by multiples of 90 degrees (furniture along walls): local ray directions
                # are signed copies of the world ones, so the frame's 1/d can be reused.
                r = np.round(self.rot)
                self.perm = [
                    (int(np.argmax(np.abs(r[:, a]))), float(r[np.argmax(np.abs(r[:, a])), a])) for a in range(3)
                ]

    def _local_rays(self, rays: Rays):
        c = self.center
        if self.rot is None:
            o = tuple(rays.o[a] - c[a] for a in range(3))
            return o, rays.d, rays.inv
        r = self.rot
        oc = _sub(rays.o, c)
        o = tuple(r[0, a] * oc[0] + r[1, a] * oc[1] + r[2, a] * oc[2] for a in range(3))
        if self.perm is not None:
            inv = tuple(rays.inv[k] if sg > 0 else -rays.inv[k] for k, sg in self.perm)
            return o, None, inv  # the slab test needs only o and 1/d
        dx, dy, dz = rays.d
        d = tuple(np.asarray(r[0, a] * dx + r[1, a] * dy + r[2, a] * dz, np.float32) for a in range(3))
        return o, d, tuple(safe_inverse(c_) for c_ in d)

    def intersect(self, rays: Rays) -> np.ndarray:
        o, d, inv = self._local_rays(rays)
        tmin, tmax = _slab(rays, -self.half, self.half, o, d, inv)
        hit = (tmax >= tmin) & (tmin > NEAR)
        return np.where(hit, tmin, INF).astype(np.float32)

    def blocks(self, rays: Rays, t_max) -> np.ndarray:
        o, d, inv = self._local_rays(rays)
        tmin, tmax = _slab(rays, -self.half, self.half, o, d, inv)
        return (tmax >= tmin) & (tmax > NEAR) & (tmin < t_max)

    def corners(self) -> np.ndarray:
        s = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float64)
        loc = s * self.half
        return self.center + (loc if self.rot is None else loc @ self.rot.T)

    def bounds(self):
        c = self.corners()
        return c.min(0), c.max(0)

    def to_local(self, px, py, pz):
        c = self.center
        x, y, z = px - c[0], py - c[1], pz - c[2]
        if self.rot is None:
            return x, y, z
        r = self.rot
        return (
            r[0, 0] * x + r[1, 0] * y + r[2, 0] * z,
            r[0, 1] * x + r[1, 1] * y + r[2, 1] * z,
            r[0, 2] * x + r[1, 2] * y + r[2, 2] * z,
        )

    def surface(self, px, py, pz):
        lx, ly, lz = self.to_local(px, py, pz)
        face, u, v = _box_face_uv(lx, ly, lz, self.half)
        axes = np.eye(3) if self.rot is None else self.rot
        nrm = np.array([axes[:, a] * s for a, s in _FACES], np.float32)  # (6, 3)
        n = nrm[face].T
        return n, face, u, v

    def face_frames(self):
        """Per face: (origin, eu, ev, size_u, size_v, normal) in world, p = origin + u*eu + v*ev."""
        r = np.eye(3) if self.rot is None else self.rot
        return [
            tuple([self.center + r @ fr[0], r @ fr[1], r @ fr[2], fr[3], fr[4], r @ fr[5]])
            for fr in _box_frames(self.half)
        ]

    def moved(self, p, other: "Box"):
        ra = np.eye(3) if self.rot is None else self.rot
        rb = np.eye(3) if other.rot is None else other.rot
        local = ra.T @ (p - self.center[:, None])
        return rb @ local + other.center[:, None]


@dataclass(eq=False)
class Room(Prim):
    """Axis-aligned box seen from inside (floor, walls, ceiling). Faces as in Box, normals inward."""

    lo: np.ndarray
    hi: np.ndarray

    def __post_init__(self):
        self.lo = np.asarray(self.lo, np.float64)
        self.hi = np.asarray(self.hi, np.float64)

    def intersect(self, rays: Rays) -> np.ndarray:
        o, inv = rays.o, rays.inv
        t = None
        for a in range(3):
            with np.errstate(invalid="ignore"):
                t1 = (self.lo[a] - o[a]) * inv[a]
                t2 = (self.hi[a] - o[a]) * inv[a]
                far = np.fmax(t1, t2)
            t = far if t is None else np.fmin(t, far, out=t)
        return np.where(t > NEAR, t, INF).astype(np.float32)

    def bounds(self):
        return self.lo, self.hi

    def surface(self, px, py, pz):
        c = (self.lo + self.hi) / 2
        half = (self.hi - self.lo) / 2
        lx, ly, lz = px - c[0], py - c[1], pz - c[2]
        face, u, v = _box_face_uv(lx, ly, lz, half)
        # Seen from inside, "right of the viewer" flips: mirror u on vertical faces.
        vert = face < 4
        width = np.where(face < 2, 2 * half[1], 2 * half[0]).astype(u.dtype)
        u = np.where(vert, width - u, u)
        nrm = -np.array([np.eye(3)[a] * s for a, s in _FACES], np.float32)
        return nrm[face].T, face, u, v

    def face_frames(self):
        c = (self.lo + self.hi) / 2
        out = []
        for f, (o, eu, ev, su, sv, n) in enumerate(_box_frames((self.hi - self.lo) / 2)):
            if f < 4:  # mirrored u (see surface)
                o, eu = o + su * eu, -eu
            out.append((c + o, eu, ev, su, sv, -n))
        return out

    def moved(self, p, other):
        return p


# ---------------------------------------------------------------------------------------------
# Planar quad


@dataclass(eq=False)
class Quad(Prim):
    """Rectangle: centre, unit axes e1 (u) and e2 (v), half sizes; two-sided."""

    center: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    half: tuple

    def __post_init__(self):
        self.center = np.asarray(self.center, np.float64)
        self.e1 = np.asarray(self.e1, np.float64)
        self.e2 = np.asarray(self.e2, np.float64)
        self.normal = np.cross(self.e1, self.e2)

    def intersect(self, rays: Rays) -> np.ndarray:
        n = self.normal
        dn = _dot(rays.d, n)
        num = float(np.dot(self.center, n)) - _dot(rays.o, n)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (num / dn).astype(np.float32)
            p = [rays.o[a] + t * rays.d[a] - self.center[a] for a in range(3)]
            a = np.abs(_dot(p, self.e1)) <= self.half[0]
            b = np.abs(_dot(p, self.e2)) <= self.half[1]
        return np.where(a & b & (t > NEAR), t, INF).astype(np.float32)

    def corners(self):
        h0, h1 = self.half
        return np.array([self.center + s0 * h0 * self.e1 + s1 * h1 * self.e2 for s0 in (-1, 1) for s1 in (-1, 1)])

    def bounds(self):
        c = self.corners()
        return c.min(0), c.max(0)

    def surface(self, px, py, pz):
        p = (px - self.center[0], py - self.center[1], pz - self.center[2])
        u = _dot(p, self.e1) + self.half[0]
        v = _dot(p, self.e2) + self.half[1]
        n = np.repeat(self.normal.astype(np.float32)[:, None], len(u), axis=1)
        return n, np.zeros(len(u), np.int8), u, v

    def face_frames(self):
        h0, h1 = self.half
        return [(self.center - h0 * self.e1 - h1 * self.e2, self.e1, self.e2, 2 * h0, 2 * h1, self.normal)]

    def moved(self, p, other):
        return p - self.center[:, None] + other.center[:, None]


# ---------------------------------------------------------------------------------------------
# Round primitives


def _sphere_blocks(rays: Rays, c, r, t_max):
    oc = _sub(rays.o, c)
    b = _dot(oc, rays.d)
    cc = _dot(oc, oc) - r * r
    disc = b * b - rays.dd * cc
    with np.errstate(invalid="ignore"):
        sq = np.sqrt(disc)
    return (disc > 0) & ((-b + sq) / rays.dd > NEAR) & ((-b - sq) / rays.dd < t_max)


def _sphere_t(rays: Rays, c, r):
    oc = _sub(rays.o, c)
    b = _dot(oc, rays.d)
    cc = _dot(oc, oc) - r * r
    disc = b * b - rays.dd * cc
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / rays.dd
    return np.where((disc > 0) & (t > NEAR), t, INF).astype(np.float32)


def _perp_frame(axis: np.ndarray, ref: np.ndarray | None):
    """Unit vectors e1, e2 perpendicular to ``axis``; e1 as close to ``ref`` as possible."""
    a = axis / np.linalg.norm(axis)
    if ref is None or abs(np.dot(ref, a)) > 0.95 * np.linalg.norm(ref):
        ref = np.array([0.0, 0.0, 1.0]) if abs(a[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = ref - np.dot(ref, a) * a
    e1 /= np.linalg.norm(e1)
    return a, e1, np.cross(a, e1)


@dataclass(eq=False)
class Sphere(Prim):
    center: np.ndarray
    radius: float
    rot: np.ndarray | None = None  # orientation of the texture (a rolling ball spins)

    def __post_init__(self):
        self.center = np.asarray(self.center, np.float64)
        self.rot = np.eye(3) if self.rot is None else np.asarray(self.rot, np.float64)

    def intersect(self, rays):
        return _sphere_t(rays, self.center, self.radius)

    def blocks(self, rays, t_max):
        return _sphere_blocks(rays, self.center, self.radius, t_max)

    def bounds(self):
        return self.center - self.radius, self.center + self.radius

    def surface(self, px, py, pz):
        c, r = self.center, self.radius
        n = np.stack([(px - c[0]) / r, (py - c[1]) / r, (pz - c[2]) / r]).astype(np.float32)
        nl = self.rot.T.astype(np.float32) @ n
        # u: fraction of the circumference (0 faces local +x), v: 0 at the top pole, 1 at the bottom.
        u = (np.arctan2(nl[1], nl[0]) / (2 * np.pi) + 0.5).astype(np.float32)
        v = (np.arccos(np.clip(nl[2], -1, 1)) / np.pi).astype(np.float32)
        return n, np.zeros(len(u), np.int8), u, v

    def moved(self, p, other: "Sphere"):
        local = self.rot.T @ (p - self.center[:, None])
        return other.rot @ local + other.center[:, None]


@dataclass(eq=False)
class Capsule(Prim):
    """Segment a-b swept by a sphere of radius r (limbs, torsos, posts with round ends)."""

    a: np.ndarray
    b: np.ndarray
    radius: float
    ref: np.ndarray | None = None  # direction of texture u = 0 around the axis (e.g. "front")
    flat: bool = False  # flat disc caps (a cylinder) instead of round ones

    def __post_init__(self):
        self.a = np.asarray(self.a, np.float64)
        self.b = np.asarray(self.b, np.float64)
        self.axis, self.e1, self.e2 = _perp_frame(
            self.b - self.a, None if self.ref is None else np.asarray(self.ref, float)
        )
        self.length = float(np.linalg.norm(self.b - self.a))

    def intersect(self, rays: Rays):
        r = self.radius
        ba = self.b - self.a
        oa = _sub(rays.o, self.a)
        baba = float(ba @ ba)
        bard = _dot(rays.d, ba)
        baoa = _dot(oa, ba)
        rdoa = _dot(rays.d, oa)
        oaoa = _dot(oa, oa)
        qa = baba * rays.dd - bard * bard
        qb = baba * rdoa - baoa * bard
        qc = baba * oaoa - baoa * baoa - r * r * baba
        h = qb * qb - qa * qc
        with np.errstate(invalid="ignore", divide="ignore"):
            t = (-qb - np.sqrt(h)) / qa
        y = baoa + t * bard
        body = (h > 0) & (y > 0) & (y < baba) & (t > NEAR)
        t = np.where(body, t, INF).astype(np.float32)
        if self.flat:
            for c, _s in ((self.a, -1.0), (self.b, 1.0)):
                dn = bard
                with np.errstate(divide="ignore", invalid="ignore"):
                    tc = (float(np.dot(c, ba)) - _dot(rays.o, ba)) / dn
                p = [rays.o[k] + tc * rays.d[k] - c[k] for k in range(3)]
                inside = (_dot(p, p) <= r * r) & (tc > NEAR)
                np.minimum(t, np.where(inside, tc, INF).astype(np.float32), out=t)
        else:
            np.minimum(t, _sphere_t(rays, self.a, r), out=t)
            np.minimum(t, _sphere_t(rays, self.b, r), out=t)
        return t

    def bounds(self):
        lo = np.minimum(self.a, self.b) - self.radius
        hi = np.maximum(self.a, self.b) + self.radius
        return lo, hi

    def surface(self, px, py, pz):
        q = (px - self.a[0], py - self.a[1], pz - self.a[2])
        y = _dot(q, self.axis)
        yc = np.clip(y, 0.0, self.length)
        radial = [q[k] - yc * self.axis[k] for k in range(3)]
        rn = np.sqrt(_dot(radial, radial)) + 1e-9
        n = np.stack([radial[k] / rn for k in range(3)]).astype(np.float32)
        if self.flat:  # cap pixels: normal along the axis
            cap = (y <= 1e-4) | (y >= self.length - 1e-4)
            if cap.any():
                sgn = np.where(y[cap] <= 1e-4, -1.0, 1.0)
                n[:, cap] = (self.axis[:, None] * sgn).astype(np.float32)
        ang = np.arctan2(_dot(radial, self.e2), _dot(radial, self.e1))
        u = (ang / (2 * np.pi) + 0.5).astype(np.float32)  # fraction around the axis
        v = y.astype(np.float32)  # metres along the axis from a
        face = np.zeros(len(u), np.int8)
        return n, face, u, v

    def moved(self, p, other: "Capsule"):
        """Rigid map that carries the segment a-b (and its reference frame) onto other's."""
        q = p - self.a[:, None]
        basis_s = np.stack([self.axis, self.e1, self.e2], 1)
        basis_o = np.stack([other.axis, other.e1, other.e2], 1)
        local = basis_s.T @ q
        local[0] *= other.length / max(self.length, 1e-9)
        return basis_o @ local + other.a[:, None]


# ---------------------------------------------------------------------------------------------
# Casting


def cast(prims: list[Prim], rays: Rays, t_max=None):
    """Closest hit of each ray among ``prims`` (no culling): returns (t, index into prims or -1)."""
    shape = rays.shape
    t = np.full(shape, INF if t_max is None else t_max, np.float32)
    idx = np.full(shape, -1, np.int16)
    for i, p in enumerate(prims):
        ti = p.intersect(rays)
        closer = ti < t
        np.copyto(t, ti, where=closer)
        idx[closer] = i
    return t, idx


def occluded(prims: list[Prim], rays: Rays, t_max) -> np.ndarray:
    """Whether each ray hits any of ``prims`` before ``t_max`` (shadow and occlusion rays)."""
    hit = np.zeros(rays.shape, bool)
    for p in prims:
        hit |= p.blocks(rays, t_max)
    return hit
