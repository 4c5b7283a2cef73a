"""Camera trajectories: handheld walk, orbit, pan + translation, forward motion, slow dolly, tripod.

A :class:`CameraPath` gives the camera-to-world rotation and centre at any time (so motion blur
can evaluate sub-frame poses). Rotations are built from a look direction with world z up and
converted to OpenCV axes (x right, y down, z forward). Handheld shake is a sum of a few random
sinusoids (smooth, deterministic per seed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from dynpose.domain.synth.raycast import Rays, cast

UP = np.array([0.0, 0.0, 1.0])
TRAJECTORIES = ("handheld_walk", "orbit", "pan_translate", "forward", "dolly", "tripod")


def look_rotation(forward: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """Camera-to-world rotation (columns: camera x right, y down, z forward) for a view direction."""
    z = forward / np.linalg.norm(forward)
    x = np.cross(z, UP)
    if np.linalg.norm(x) < 1e-6:
        x = np.array([1.0, 0.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    if roll:
        c, s = math.cos(roll), math.sin(roll)
        x, y = c * x + s * y, -s * x + c * y
    return np.stack([x, y, z], 1)


class SmoothNoise:
    """Zero-mean, unit-RMS smooth random signal: a sum of sinusoids with random frequencies."""

    def __init__(self, rng: np.random.Generator, fmin: float, fmax: float, n: int = 5):
        self.f = np.exp(rng.uniform(np.log(fmin), np.log(fmax), n))
        self.ph = rng.uniform(0, 2 * np.pi, n)
        self.a = 1.0 / np.sqrt(self.f)  # more energy at low frequencies
        self.a /= np.sqrt(np.sum(self.a**2) / 2)

    def __call__(self, t: float) -> float:
        return float(np.sum(self.a * np.sin(2 * np.pi * self.f * t + self.ph)))


@dataclass
class CameraPath:
    kind: str
    position: Callable[[float], np.ndarray]
    forward: Callable[[float], np.ndarray]
    roll: Callable[[float], float] = lambda t: 0.0
    focal_scale: Callable[[float], float] = lambda t: 1.0
    params: dict = field(default_factory=dict)

    def c2w(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        return look_rotation(self.forward(t), self.roll(t)), self.position(t)

    def w2c(self, t: float) -> np.ndarray:
        r, c = self.c2w(t)
        out = np.empty((3, 4))
        out[:, :3] = r.T
        out[:, 3] = -r.T @ c
        return out


class Shake:
    """Handheld shake: rotational jitter (deg) and positional jitter (m), scaled by ``amount``."""

    def __init__(self, rng, amount: float):
        self.amount = amount
        self.yaw, self.pitch, self.roll = (SmoothNoise(rng, 0.3, 4.0) for _ in range(3))
        self.pos = [SmoothNoise(rng, 0.3, 3.0) for _ in range(3)]

    def angles(self, t):
        a = math.radians(0.6) * self.amount
        return a * self.yaw(t), a * self.pitch(t), 0.5 * a * self.roll(t)

    def offset(self, t):
        return 0.01 * self.amount * np.array([p(t) for p in self.pos])


def _dir(yaw, pitch):
    return np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)])


def _with_shake(kind, pos_fn, yaw_fn, pitch_fn, shake: Shake, params, bob=0.0, step_hz=1.8):
    def position(t):
        p = pos_fn(t) + shake.offset(t)
        if bob:
            p = p + np.array([0, 0, bob * math.sin(2 * math.pi * step_hz * t)])
        return p

    def forward(t):
        dy, dp, _ = shake.angles(t)
        return _dir(yaw_fn(t) + dy, pitch_fn(t) + dp)

    return CameraPath(kind, position, forward, roll=lambda t: shake.angles(t)[2], params=params)


def make_path(kind: str, rng: np.random.Generator, scene, duration: float, shake: float = 1.0) -> CameraPath:
    """A random path of ``kind`` inside ``scene``; retried until it is collision-free and looks at
    something at least a metre away (not into a wall)."""
    best, best_score = None, -1.0
    for attempt in range(60):
        slow = 1.0 if attempt < 30 else 0.6  # later attempts: slower, shorter paths
        path = _propose(kind, rng, scene, duration, shake, slow)
        score = _check(path, scene, duration)
        if score >= 1.0:
            return path
        if score > best_score:
            best, best_score = path, score
    return best


def _check(path: CameraPath, scene, duration) -> float:
    """1.0 when the path is clear of obstacles and views are open; lower is worse."""
    ts = np.linspace(0, duration, max(8, int(duration * 6)))
    xy = np.array([path.position(t)[:2] for t in ts])
    clear = scene.free(xy, margin=0.45).mean()
    if clear < 1.0:
        return 0.5 * clear
    # View distance along the optical axis and four rays around it (static scene only): the
    # camera should not stare at a wall from close up.
    offsets = [(0, 0), (0.35, 0), (-0.35, 0), (0, 0.2), (0, -0.2)]  # tangents of the angle off-axis
    o, d = [], []
    for t in ts:
        rot, c = path.c2w(t)
        for ox, oy in offsets:
            o.append(c)
            d.append(rot @ np.array([ox, oy, 1.0]))
    o, d = np.array(o, np.float32), np.array(d, np.float32)
    t_hit, _ = cast(scene.static, Rays(tuple(o.T), tuple(d.T)))
    t_hit = np.where(np.isfinite(t_hit), t_hit, 100.0).reshape(len(ts), len(offsets))
    view = np.median(t_hit, axis=1)  # typical depth in each frame
    lo, mid = (1.2, 2.5) if scene.layout == "room" else (2.5, 5.0)
    if view.min() < lo or np.median(view) < mid:
        return 0.5 + 0.4 * min(1.0, view.min() / lo) * min(1.0, np.median(view) / mid)
    return 1.0


def _random_point(rng, scene, margin=0.6):
    x0, y0, x1, y1 = scene.area
    for _ in range(200):
        p = rng.uniform([x0, y0], [x1, y1])
        if scene.free(p, margin)[0]:
            return p
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2])


def _propose(kind, rng, scene, T, shake_amount, slow) -> CameraPath:
    eye = rng.uniform(1.3, 1.8)
    room = scene.layout == "room"
    if kind == "tripod":
        shake = Shake(rng, 0.0)
        c = np.array([*_random_point(rng, scene), eye])
        yaw, pitch = rng.uniform(0, 2 * np.pi), math.radians(rng.uniform(-12, 3))
        return _with_shake(kind, lambda t: c, lambda t: yaw, lambda t: pitch, shake, {"center": c.tolist()})
    if kind == "orbit":
        shake = Shake(rng, 0.4 * shake_amount)
        focus = (
            scene.focus[int(rng.integers(len(scene.focus)))]
            if scene.focus
            else np.array([*_random_point(rng, scene), 1.0])
        )
        r = rng.uniform(2.2, 3.5) if room else rng.uniform(3.0, 7.0)
        w = math.radians(rng.uniform(12, 30)) * slow * rng.choice([-1, 1])
        a0 = rng.uniform(0, 2 * np.pi)
        h = rng.uniform(1.3, 2.0)
        tgt = focus + np.array([0, 0, rng.uniform(-0.3, 0.3)])

        def pos(t):
            a = a0 + w * t
            return np.array([focus[0] + r * math.cos(a), focus[1] + r * math.sin(a), h])

        def fwd_yaw(t):
            d = tgt - pos(t)
            return math.atan2(d[1], d[0])

        def fwd_pitch(t):
            d = tgt - pos(t)
            return math.atan2(d[2], math.hypot(d[0], d[1]))

        return _with_shake(kind, pos, fwd_yaw, fwd_pitch, shake, {"radius": r, "deg_per_s": math.degrees(w)})
    start = _random_point(rng, scene)
    heading = rng.uniform(0, 2 * np.pi)
    if scene.layout == "street" and rng.random() < 0.7:
        heading = rng.choice([0.0, np.pi]) + rng.normal(0, 0.15)
    if kind == "handheld_walk":
        v = (rng.uniform(0.5, 0.9) if room else rng.uniform(0.8, 1.4)) * slow
        curv = rng.normal(0, 0.08 if room else 0.03)
        look = SmoothNoise(rng, 0.03, 0.15)
        look_amp = math.radians(rng.uniform(8, 25))
        side = rng.choice([0.0, 0.0, rng.uniform(-1.2, 1.2)])  # sometimes walking while looking sideways
        shake = Shake(rng, 1.0 * shake_amount)
        pitch0 = math.radians(rng.uniform(-10, 2))

        def pos(t):
            s = v * t
            h = heading + curv * s
            if abs(curv) > 1e-6:
                x = start[0] + (math.sin(h) - math.sin(heading)) / curv
                y = start[1] - (math.cos(h) - math.cos(heading)) / curv
            else:
                x, y = start[0] + s * math.cos(heading), start[1] + s * math.sin(heading)
            return np.array([x, y, eye])

        return _with_shake(
            kind,
            pos,
            lambda t: heading + curv * v * t + side + look_amp * look(t),
            lambda t: pitch0,
            shake,
            {"speed": v},
            bob=0.012 * shake_amount,
            step_hz=1.6 + 0.4 * v,
        )
    if kind == "pan_translate":
        v = (rng.uniform(0.25, 0.6) if room else rng.uniform(0.4, 1.0)) * slow
        move = heading
        yaw0 = move + rng.choice([-1, 1]) * math.radians(rng.uniform(60, 110))
        rate = math.radians(rng.uniform(8, 22)) * rng.choice([-1, 1]) * slow
        rate = rate if abs(rate * T) < math.radians(110) else math.copysign(math.radians(110) / T, rate)
        shake = Shake(rng, 0.5 * shake_amount)
        pitch0 = math.radians(rng.uniform(-8, 3))

        def pos(t):
            return np.array([start[0] + v * t * math.cos(move), start[1] + v * t * math.sin(move), eye])

        return _with_shake(
            kind,
            pos,
            lambda t: yaw0 + rate * t,
            lambda t: pitch0,
            shake,
            {"speed": v, "pan_deg_per_s": math.degrees(rate)},
        )
    if kind == "forward":
        v = (rng.uniform(0.5, 0.9) if room else rng.uniform(1.0, 2.0)) * slow
        sway = SmoothNoise(rng, 0.05, 0.2)
        shake = Shake(rng, 0.5 * shake_amount)
        pitch0 = math.radians(rng.uniform(-8, 0))

        def pos(t):
            return np.array([start[0] + v * t * math.cos(heading), start[1] + v * t * math.sin(heading), eye])

        return _with_shake(
            kind,
            pos,
            lambda t: heading + math.radians(6) * sway(t),
            lambda t: pitch0,
            shake,
            {"speed": v},
            bob=0.006 * shake_amount,
        )
    if kind == "dolly":
        v = rng.uniform(0.15, 0.35) * slow
        yaw0 = heading + rng.choice([0, math.pi / 2, -math.pi / 2]) + rng.normal(0, 0.2)
        drift = math.radians(rng.uniform(-3, 3))
        shake = Shake(rng, 0.08 * shake_amount)
        pitch0 = math.radians(rng.uniform(-6, 2))

        def pos(t):
            return np.array([start[0] + v * t * math.cos(heading), start[1] + v * t * math.sin(heading), eye])

        return _with_shake(kind, pos, lambda t: yaw0 + drift * t, lambda t: pitch0, shake, {"speed": v})
    raise ValueError(f"unknown trajectory {kind!r}; expected one of {TRAJECTORIES}")


def cut_path(a: CameraPath, b: CameraPath, t_cut: float) -> CameraPath:
    """Hard shot change: path ``a`` before ``t_cut``, ``b`` after."""
    return CameraPath(
        "shot_change",
        lambda t: a.position(t) if t < t_cut else b.position(t),
        lambda t: a.forward(t) if t < t_cut else b.forward(t),
        roll=lambda t: a.roll(t) if t < t_cut else b.roll(t),
        params={"t_cut": t_cut},
    )
