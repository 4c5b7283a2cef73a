"""Placing moving objects where the camera will see them, and checking how much they cover.

Each object's path is built around a rendezvous: at a random time it passes a random point in the
camera's field of view at a random distance. Paths that come too close to the camera or cross
static furniture are re-drawn. The whole set is then checked with a cheap low-resolution
visibility pass, and re-drawn when the dynamic coverage goes above the clip's limit.
"""

from __future__ import annotations

import math

import numpy as np

from dynpose.domain.synth.objects import Ball, Car, DynamicObject, MovingBox, Path2D, Walker
from dynpose.domain.synth.render import CameraModel, Renderer

KIND_WEIGHTS = {
    "room": {"person": 0.6, "ball": 0.25, "box": 0.15},
    "street": {"person": 0.5, "car": 0.35, "ball": 0.08, "box": 0.07},
    "plaza": {"person": 0.65, "ball": 0.2, "box": 0.15},
}


def _in_area(p, area):
    x0, y0, x1, y1 = area
    return x0 <= p[0] <= x1 and y0 <= p[1] <= y1


def _path_through(rng, scene, point, heading, speed, t_star, duration, area, margin):
    """Straight walk through ``point`` at time t_star, cut where it would leave ``area`` or hit an
    obstacle (the object then walks back: ping-pong). Returns (path, t0) or (None, 0)."""
    h = np.array([math.cos(heading), math.sin(heading)])
    reach_back, reach_fwd = speed * (t_star + 1.0), speed * (duration - t_star + 1.0)
    s = np.arange(-reach_back, reach_fwd + 0.05, 0.1)
    pts = point[None] + s[:, None] * h[None]
    ok = scene.free(pts, margin, area=area)
    i0 = int(np.argmin(np.abs(s)))
    if not ok[i0]:
        return None, 0.0
    lo = i0
    while lo > 0 and ok[lo - 1]:
        lo -= 1
    hi = i0
    while hi < len(s) - 1 and ok[hi + 1]:
        hi += 1
    a, b = pts[lo], pts[hi]
    if np.linalg.norm(b - a) < 0.5:
        return None, 0.0
    # Start at a at time t0 so that the object reaches ``point`` at t_star.
    return Path2D([a, b]), t_star - float(np.linalg.norm(point - a)) / max(speed, 1e-6)


def propose_object(kind, obj_id, rng, scene, path, duration, hfov, tq, dist_range=None):
    """One object of ``kind`` meeting the camera's view, or None if no valid placement was found."""
    room = scene.layout == "room"
    for _ in range(30):
        t_star = rng.uniform(0.15, 0.85) * duration
        rot, c = path.c2w(t_star)
        fwd = rot[:, 2]
        yaw = math.atan2(fwd[1], fwd[0]) + rng.uniform(-0.45, 0.45) * math.radians(hfov)
        lo, hi = dist_range or ((1.6, 5.0) if room else (2.5, 12.0))
        direction = np.array([math.cos(yaw), math.sin(yaw)])
        if kind != "car":  # stay on the near side of walls and furniture along the view ray
            steps = np.arange(lo, hi + 1e-6, 0.2)
            ok = scene.free(
                c[:2] + steps[:, None] * direction,
                0.3,
                area=scene.walk_areas[0] if len(scene.walk_areas) == 1 else None,
            )
            if not ok.any():
                continue
            first_bad = np.nonzero(~ok)[0]
            hi = steps[first_bad[0] - 1] if len(first_bad) and first_bad[0] > 0 else (hi if not len(first_bad) else lo)
        dist = rng.uniform(lo, max(lo, hi))
        p = c[:2] + dist * direction
        if kind == "car":
            if not scene.lanes:
                return None
            lane_y, direction = scene.lanes[int(rng.integers(len(scene.lanes)))]
            speed = rng.uniform(3.0, 8.0)
            x_star = p[0]
            x0 = x_star - direction * speed * t_star
            pth = Path2D([[x0 - direction * 5, lane_y], [x0 + direction * speed * (duration + 5), lane_y]])
            obj = Car(obj_id, rng, pth, speed, t0=-5.0 / speed, tpm=60 * tq)
        else:
            area = scene.walk_areas[int(rng.integers(len(scene.walk_areas)))] if scene.walk_areas else scene.area
            if not _in_area(p, area) or not scene.free(p, 0.4, area=area)[0]:
                continue
            heading = rng.uniform(0, 2 * np.pi)
            if kind == "person":
                speed = 0.0 if rng.random() < 0.12 else rng.uniform(0.8, 1.6)
            elif kind == "ball":
                speed = rng.uniform(0.6, 3.0)
            else:
                speed = rng.uniform(0.3, 1.2)
            if speed == 0.0:
                pth, t0 = Path2D([p, p + 1e-3]), 0.0
            else:
                pth, t0 = _path_through(rng, scene, p, heading, speed, t_star, duration, area, 0.45)
                if pth is None:
                    continue
            if kind == "person":
                obj = Walker(obj_id, rng, pth, speed, t0=t0)
            elif kind == "ball":
                obj = Ball(obj_id, rng, pth, speed, t0=t0)
            else:
                obj = MovingBox(obj_id, rng, pth, speed, t0=t0, tpm=100 * tq)
        if _valid(obj, scene, path, duration, kind):
            return obj
    return None


def _valid(obj: DynamicObject, scene, path, duration, kind) -> bool:
    ts = np.linspace(0, duration, max(6, int(duration * 8)))
    centers = np.array([obj.center(t) for t in ts])
    cams = np.array([path.c2w(t)[1] for t in ts])
    min_cam = 2.2 if kind == "car" else 1.0
    if np.min(np.linalg.norm(centers[:, :2] - cams[:, :2], axis=1)) < min_cam + obj.radius:
        return False
    if kind != "car" and not scene.free(centers[:, :2], margin=0.3).all():
        return False
    return True


def coverage(scene, path, objects, cam: CameraModel, times, scale: int = 8, focal_scale=None):
    """Fraction of each frame covered by moving objects, from a low-resolution visibility pass."""
    small = CameraModel(
        cam.fx / scale,
        cam.fy / scale,
        (cam.width / scale - 1) / 2,
        (cam.height / scale - 1) / 2,
        max(8, cam.width // scale),
        max(6, cam.height // scale),
        cam.xi,
    )
    r = Renderer(scene)
    n_static = len(scene.static)
    out = []
    for t in times:
        dyn = [p for o in objects for p in o.prims(t)]
        c = small if focal_scale is None else small.scaled_focal(focal_scale(t))
        rot, ctr = path.c2w(t)
        _, pid, _, _ = r.visibility(c, rot, ctr, dyn)
        out.append(float(np.mean(pid >= n_static)))
    return np.array(out)


def populate(
    rng,
    scene,
    path,
    duration,
    n_objects,
    cam: CameraModel,
    tq,
    max_coverage=0.6,
    kinds=None,
    attempts=5,
    focal_scale=None,
    min_mean: float = 0.0,
):
    """Objects for a clip with max coverage under ``max_coverage`` and mean coverage at least
    ``min_mean`` when possible (else the best of a few draws)."""
    if n_objects <= 0:
        return [], np.zeros(1)
    hfov = math.degrees(2 * math.atan(cam.width / 2 / cam.fx))
    weights = kinds or KIND_WEIGHTS[scene.layout]
    names, p = list(weights), np.array(list(weights.values()), float)
    times = np.linspace(0, duration, max(6, int(duration * 3)))
    best, best_cov, best_score = [], np.zeros(len(times)), -1e9
    for _attempt in range(attempts):
        objs = []
        for _k in range(n_objects):
            kind = names[int(rng.choice(len(names), p=p / p.sum()))]
            o = propose_object(kind, len(objs) + 1, rng, scene, path, duration, hfov, tq)
            if o is not None:
                objs.append(o)
        cov = coverage(scene, path, objs, cam, times, focal_scale=focal_scale)
        visible = float(np.mean(cov > 0.003))
        score = visible + min(cov.mean(), min_mean) / max(min_mean, 1e-9) - 10 * max(0.0, cov.max() - max_coverage)
        if cov.max() <= max_coverage and visible >= 0.5 and cov.mean() >= min_mean:
            return objs, cov
        if score > best_score:
            best, best_cov, best_score = objs, cov, score
    if best_cov.max() > max_coverage:  # still too much: drop the biggest contributors
        while best and best_cov.max() > max_coverage:
            best = best[:-1]
            best_cov = coverage(scene, path, best, cam, times, focal_scale=focal_scale)
    return best, best_cov


def long_lens_shot(rng, scene, duration, dist_range, shake: float = 1.0):
    """A camera on a fixed spot following a person far away with a long lens.

    Returns (camera path, walker) or None. The person must be in plain sight (ray cast against
    the static scene) for most of the clip."""
    from dynpose.domain.synth.camera_paths import CameraPath, SmoothNoise
    from dynpose.domain.synth.raycast import Rays, cast

    UPV = np.array([0.0, 0.0, 1.0])
    x0, y0, x1, y1 = scene.area
    for _ in range(120):
        c = rng.uniform([x0, y0], [x1, y1])
        if not scene.free(c, 0.5)[0]:
            continue
        eye = np.array([c[0], c[1], rng.uniform(1.4, 1.8)])
        yaw = rng.uniform(0, 2 * np.pi)
        dist = rng.uniform(*dist_range)
        p = c + dist * np.array([math.cos(yaw), math.sin(yaw)])
        areas = scene.walk_areas or [scene.area]
        area = next((a for a in areas if _in_area(p, a)), None)
        if area is None or not scene.free(p, 0.4, area=area)[0]:
            continue
        speed = rng.uniform(0.7, 1.4)
        pth, t0 = _path_through(rng, scene, p, rng.uniform(0, 2 * np.pi), speed, duration / 2, duration, area, 0.45)
        if pth is None:
            continue
        walker = Walker(1, rng, pth, speed, t0=t0)
        ts = np.linspace(0, duration, 8)
        targets = np.array([walker.center(t) + UPV * 0.2 * walker.height for t in ts])
        d = targets - eye
        dn = np.linalg.norm(d, axis=1)
        if dn.min() < 0.6 * dist_range[0]:
            continue
        rays = Rays(tuple(float(v) for v in eye), tuple((d[:, a] / dn).astype(np.float32) for a in range(3)))
        t_hit, _ = cast(scene.static, rays)
        if np.mean(t_hit > dn * 0.97) < 0.85:
            continue
        jit = [SmoothNoise(rng, 0.2, 2.0) for _ in range(2)]
        amp = 0.0015 * shake  # radians: a long lens magnifies the smallest hand tremor

        def forward(t, w=walker, eye=eye, amp=amp, jit=jit):
            f = w.center(t) + UPV * 0.2 * w.height - eye
            f = f / np.linalg.norm(f)
            side = np.cross(f, UPV)
            side /= max(np.linalg.norm(side), 1e-9)
            return f + amp * jit[0](t) * side + amp * jit[1](t) * UPV

        return CameraPath("tripod", lambda t, e=eye: e, forward, params={"subject_distance": float(dist)}), walker
    return None
