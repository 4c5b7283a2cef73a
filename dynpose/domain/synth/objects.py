"""Independently moving objects: walking people, cars, bouncing balls, sliding or floating boxes.

An object returns its primitives at any time ``t`` (always the same list, in the same order, so
that a primitive at ``t`` can be matched with itself at ``t + dt`` for motion blur). Paths are
2-D polylines on the ground walked at constant speed, back and forth.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial.transform import Rotation

from dynpose.domain.synth import textures as tx
from dynpose.domain.synth.raycast import Box, Capsule, Prim, Sphere
from dynpose.domain.synth.textures import Material, Texture

UP = np.array([0.0, 0.0, 1.0])


def _t(rng: np.random.Generator) -> np.random.Generator:
    """A child generator for one texture: geometry draws then do not depend on texture sizes."""
    return np.random.default_rng(int(rng.integers(1 << 62)))


class Path2D:
    """Polyline walked at constant speed; reverses at the ends (ping-pong)."""

    def __init__(self, points, z: float = 0.0):
        self.p = np.asarray(points, np.float64)
        seg = np.diff(self.p, axis=0)
        self.len = np.linalg.norm(seg, axis=1)
        self.cum = np.concatenate([[0.0], np.cumsum(self.len)])
        self.total = float(self.cum[-1])
        self.z = z

    def at(self, s: float):
        """Position (3,) and unit heading (3,) at arc length s."""
        if self.total <= 1e-9:
            return np.array([*self.p[0], self.z]), np.array([1.0, 0.0, 0.0])
        period = 2 * self.total
        s = s % period
        back = s > self.total
        if back:
            s = period - s
        i = int(np.clip(np.searchsorted(self.cum, s, side="right") - 1, 0, len(self.len) - 1))
        f = (s - self.cum[i]) / max(self.len[i], 1e-9)
        xy = self.p[i] + f * (self.p[i + 1] - self.p[i])
        h = (self.p[i + 1] - self.p[i]) / max(self.len[i], 1e-9)
        # Smooth the heading over the last/first 0.4 m of a segment so turns are not instant.
        blend = 0.4
        if f * self.len[i] > self.len[i] - blend and i + 1 < len(self.len):
            h2 = (self.p[i + 2] - self.p[i + 1]) / max(self.len[i + 1], 1e-9)
            w = 0.5 * (1 - (self.len[i] - f * self.len[i]) / blend)
            h = (1 - w) * h + w * h2
        elif f * self.len[i] < blend and i > 0:
            h0 = (self.p[i] - self.p[i - 1]) / max(self.len[i - 1], 1e-9)
            w = 0.5 * (1 - f * self.len[i] / blend)
            h = (1 - w) * h + w * h0
        h = h / max(np.linalg.norm(h), 1e-9)
        if back:
            h = -h
        return np.array([xy[0], xy[1], self.z]), np.array([h[0], h[1], 0.0])


class DynamicObject:
    obj_id: int
    kind: str
    radius: float  # footprint radius for planning (m)
    height: float

    def prims(self, t: float) -> list[Prim]:
        raise NotImplementedError

    def center(self, t: float) -> np.ndarray:
        raise NotImplementedError

    def _tag(self, prims):
        for p in prims:
            p.obj_id = self.obj_id
        return prims


def _wrapped(rng, img, circ, v_tpm):
    return Material.wrapped(Texture(img), circ, v_tpm=v_tpm)


class Walker(DynamicObject):
    """A person built from capsules and a sphere, with a simple walking gait."""

    kind = "person"

    def __init__(
        self,
        obj_id: int,
        rng: np.random.Generator,
        path: Path2D,
        speed: float,
        t0: float = 0.0,
        height: float | None = None,
    ):
        self.obj_id = obj_id
        self.path, self.speed, self.t0 = path, speed, t0
        self.H = float(height or rng.uniform(1.55, 1.92))
        self.height = self.H
        self.radius = 0.35
        self.stride = 0.75 * self.H  # distance per gait cycle... (two steps)
        self.phase0 = rng.uniform(0, 2 * np.pi)
        H = self.H
        shirt = tx.fabric(_t(rng), 96, 64)
        pants = tx.fabric(
            _t(rng),
            64,
            64,
            color=tx.jitter_color(
                _t(rng), rng.choice([(40, 50, 80), (30, 30, 30), (120, 100, 80), (70, 70, 75)]), 0.15
            ),
            pattern="solid",
        )
        skin_c = tx.jitter_color(_t(rng), tx.SKIN[int(rng.integers(len(tx.SKIN)))], 0.05)
        skin = tx.to_u8(tx.colorize(skin_c, tx.noise(_t(rng), 16, 32, 8, 2), 0.05))
        shoes = tx.fabric(_t(rng), 32, 16, color=tx.jitter_color(_t(rng), (40, 35, 30), 0.3), pattern="solid")
        long_sleeves = rng.random() < 0.5
        r_t, r_ua, r_fa, r_th, r_sh = 0.078 * H, 0.028 * H, 0.024 * H, 0.042 * H, 0.032 * H
        self.r = dict(
            torso=r_t,
            ua=r_ua,
            fa=r_fa,
            th=r_th,
            sh=r_sh,
            foot=0.022 * H,
            head=0.064 * H,
            shoulders=0.052 * H,
            hips=0.06 * H,
            hand=0.026 * H,
        )
        self.build = rng.uniform(0.9, 1.15)  # broader or slimmer people
        shirt_m = _wrapped(rng, shirt, 2 * np.pi * r_t, 96 / (0.3 * H))
        self.mat = dict(
            torso=shirt_m,
            ua=_wrapped(rng, shirt, 2 * np.pi * r_ua, 96 / (0.3 * H)),
            fa=_wrapped(rng, shirt if long_sleeves else skin, 2 * np.pi * r_fa, 64 / (0.3 * H)),
            th=_wrapped(rng, pants, 2 * np.pi * r_th, 64 / (0.3 * H)),
            sh=_wrapped(rng, pants, 2 * np.pi * r_sh, 64 / (0.3 * H)),
            foot=_wrapped(rng, shoes, 2 * np.pi * 0.02 * H, 16 / 0.1),
            head=Material.wrapped(Texture(tx.head(_t(rng), skin=skin_c)), 2 * np.pi * 0.066 * H),
            hand=_wrapped(rng, skin, 2 * np.pi * 0.026 * H, 64),
        )
        # Standing people gesture instead of walking.
        self.standing = speed < 0.05

    def _state(self, t):
        s = self.speed * (t - self.t0)
        pos, fwd = self.path.at(s)
        phase = self.phase0 + 2 * np.pi * s / self.stride
        return pos, fwd, phase

    def center(self, t):
        pos, _, _ = self._state(t)
        return pos + UP * self.H * 0.5

    def prims(self, t):
        H = self.H
        pos, f, ph = self._state(t)
        if self.standing:
            ph = self.phase0
        left = np.cross(UP, f)
        amp = 0.0 if self.standing else min(0.45, 0.3 + 0.1 * self.speed)
        bob = 0.012 * H * math.cos(2 * ph) * (amp > 0)
        pelvis = pos + UP * (0.53 * H + bob)
        prims: list[Prim] = []
        m, r = self.mat, self.r

        def limb(start, ang, length):
            d = -UP * math.cos(ang) + f * math.sin(ang)
            return start + length * d

        for side, sgn in ((1.0, 0.0), (-1.0, np.pi)):
            swing = amp * math.sin(ph + sgn)
            knee_bend = 0.1 + (0.9 * max(0.0, math.cos(ph + sgn)) ** 1.5 if amp > 0 else 0.0)
            hip = pelvis + left * side * 0.055 * H
            knee = limb(hip, swing, 0.245 * H)
            ankle = limb(knee, swing - knee_bend, 0.235 * H)
            toe = ankle + f * 0.11 * H - UP * 0.02 * H
            prims.append(Capsule(hip, knee, r["th"], ref=f, material=[m["th"]]))
            prims.append(Capsule(knee, ankle, r["sh"], ref=f, material=[m["sh"]]))
            prims.append(Capsule(ankle, toe, r["foot"], ref=f, material=[m["foot"]]))
        lean = 0.02 * H * (amp > 0)
        chest = pelvis + UP * 0.27 * H + f * lean
        b = self.build
        # Torso: a vertical capsule plus horizontal ones at the hips and shoulders, so that the body
        # is wider than deep. Hip and shoulder lines counter-rotate slightly while walking.
        twist = 0.12 * amp * math.sin(ph)
        hip_axis = left * math.cos(twist) + f * math.sin(twist)
        sh_axis = left * math.cos(-1.5 * twist) + f * math.sin(-1.5 * twist)
        prims.append(Capsule(pelvis + UP * 0.03 * H, chest, r["torso"] * b, ref=f, material=[m["torso"]]))
        prims.append(
            Capsule(
                pelvis + UP * 0.02 * H - hip_axis * 0.045 * H * b,
                pelvis + UP * 0.02 * H + hip_axis * 0.045 * H * b,
                r["hips"],
                ref=f,
                material=[m["th"]],
            )
        )
        prims.append(
            Capsule(
                chest - UP * 0.03 * H - sh_axis * 0.085 * H * b,
                chest - UP * 0.03 * H + sh_axis * 0.085 * H * b,
                r["shoulders"],
                ref=f,
                material=[m["torso"]],
            )
        )
        for side, sgn in ((1.0, np.pi), (-1.0, 0.0)):
            swing = -0.8 * amp * math.sin(ph + sgn) if amp > 0 else 0.15 * math.sin(1.3 * self.phase0 + t * 2.0 + side)
            shoulder = chest + sh_axis * side * 0.13 * H * b - UP * 0.035 * H
            elbow = limb(shoulder, swing, 0.17 * H) + left * side * 0.01 * H
            if self.standing:  # gesture: forearm raised and waving
                wrist = elbow + 0.15 * H * (f * 0.7 + UP * (0.4 + 0.3 * math.sin(3 * t + side)))
            else:
                wrist = limb(elbow, swing + 0.3 + 0.3 * max(0.0, math.sin(ph + sgn)), 0.16 * H)
            prims.append(Capsule(shoulder, elbow, r["ua"], ref=f, material=[m["ua"]]))
            prims.append(Capsule(elbow, wrist, r["fa"], ref=f, material=[m["fa"]]))
            hand_dir = (wrist - elbow) / max(np.linalg.norm(wrist - elbow), 1e-9)
            prims.append(Sphere(wrist + hand_dir * 0.03 * H, r["hand"], material=[m["hand"]]))
        head_c = chest + UP * 0.11 * H
        rot = np.stack([f, left, UP], 1)
        prims.append(Sphere(head_c, r["head"], rot=rot, material=[m["head"]]))
        prims.append(Capsule(chest, chest + UP * 0.05 * H, 0.028 * H, material=[m["hand"]]))  # neck
        return self._tag(prims)


def _rz(yaw):
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def car_textures(rng, tpm: float, length: float, width: float, body_h: float, cab_len: float, cab_h: float, color=None):
    """Per-face materials for the body and cabin boxes (faces: +x front, -x back, +y, -y, top, bottom)."""
    color = (
        color
        if color is not None
        else tx.jitter_color(
            _t(rng),
            rng.choice(
                [
                    (180, 20, 25),
                    (20, 40, 120),
                    (200, 200, 200),
                    (30, 30, 30),
                    (90, 90, 95),
                    (220, 180, 30),
                    (30, 100, 60),
                    (240, 240, 235),
                ]
            ),
            0.1,
        )
    )

    def paint(w_m, h_m):
        w, h = tx.size_px(w_m, h_m, tpm, 1024)
        img = tx.colorize(color, tx.noise(_t(rng), h, w, 0.5 * tpm, 4), 0.05)
        return img, w, h

    side, w, h = paint(length, body_h)
    for x in (0.3, 0.55):  # door seams and handles
        cv2_line(side, (int(w * x), 0), (int(w * x), h), color * 0.5, max(1, int(0.01 * tpm)))
        cv2_rect(
            side,
            (int(w * x) + int(0.15 * tpm), int(0.2 * h)),
            (int(w * x) + int(0.3 * tpm), int(0.27 * h)),
            color * 0.6,
        )
    side[int(0.85 * h) :] *= 0.35  # dark sill
    front, fw, fh = paint(width, body_h)
    cv2_rect(front, (int(0.25 * fw), int(0.4 * fh)), (int(0.75 * fw), int(0.75 * fh)), (25, 25, 28))  # grille
    for x in (0.05, 0.78):
        cv2_rect(front, (int(x * fw), int(0.2 * fh)), (int((x + 0.17) * fw), int(0.4 * fh)), (235, 235, 215))
    back, bw, bh = paint(width, body_h)
    for x in (0.05, 0.8):
        cv2_rect(back, (int(x * bw), int(0.15 * bh)), (int((x + 0.15) * bw), int(0.4 * bh)), (180, 20, 20))
    cv2_rect(back, (int(0.35 * bw), int(0.45 * bh)), (int(0.65 * bw), int(0.65 * bh)), (235, 235, 235))
    tx.put_text_fit(
        back,
        f"{tx.random_word(_t(rng), 1).upper()} {int(rng.integers(100, 999))}",
        (0.36 * bw, 0.46 * bh, 0.28 * bw, 0.18 * bh),
        (20, 20, 20),
    )
    top, tw, th = paint(length, width)

    def glass(w_m, h_m, frame_frac=0.12):
        w, h = tx.size_px(w_m, h_m, tpm, 1024)
        img = tx.colorize((35, 45, 55), tx.noise(_t(rng), h, w, 0.3 * tpm, 4), 0.3)
        yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        img += 60 * (1 - yy) * np.array([0.8, 0.9, 1.0], np.float32)  # sky reflection
        fp = int(frame_frac * min(w, h))
        img[:fp], img[:, :fp], img[:, -fp:] = color, color, color
        if w > 3 * h:
            img[:, int(w * 0.45) : int(w * 0.45) + fp] = color  # B pillar
        return img

    cab_side = glass(cab_len, cab_h)
    cab_front = glass(width * 0.9, cab_h)
    cab_back = glass(width * 0.9, cab_h)
    cab_top, _, _ = paint(cab_len, width)

    def mats(imgs, shiny):
        out = []
        for img in imgs:
            tex = Texture(tx.to_u8(tx.dirt(_t(rng), img, 0.12, 0.8 * tpm)))
            out.append(Material.metric(tex, tpm, shininess=shiny))
        return out

    body = mats([front, back, side, side[:, ::-1], top, top], 0.5)
    cabin = mats([cab_front, cab_back, cab_side, cab_side[:, ::-1], cab_top, cab_top], 0.8)
    return body, cabin


def cv2_line(img, p0, p1, color, th):
    import cv2

    cv2.line(img, p0, p1, tuple(float(c) for c in np.broadcast_to(color, 3)), th, cv2.LINE_AA)


def cv2_rect(img, p0, p1, color):
    import cv2

    cv2.rectangle(img, p0, p1, tuple(float(c) for c in np.broadcast_to(color, 3)), -1, cv2.LINE_AA)


class Car(DynamicObject):
    """A car (body + cabin boxes + four wheels) driving along a path."""

    kind = "car"

    def __init__(
        self,
        obj_id,
        rng,
        path: Path2D,
        speed: float,
        t0: float = 0.0,
        tpm: float = 60.0,
        scale: float = 1.0,
        static: bool = False,
    ):
        self.obj_id = 0 if static else obj_id
        self.path, self.speed, self.t0 = path, speed, t0
        self.L = rng.uniform(3.9, 4.8) * scale
        self.W = rng.uniform(1.7, 1.9) * min(scale, 1.25)
        self.body_h = rng.uniform(0.6, 0.75) * scale
        self.cab_h = rng.uniform(0.45, 0.6) * scale
        self.cab_len = self.L * rng.uniform(0.45, 0.6)
        self.wheel_r = 0.32 * min(scale, 1.4)
        self.radius = self.L / 2
        self.height = self.wheel_r * 0.6 + self.body_h + self.cab_h
        self.body_m, self.cab_m = car_textures(rng, tpm, self.L, self.W, self.body_h, self.cab_len, self.cab_h)
        tyre = np.full((32, 64, 3), 25, np.uint8)
        tyre[8:24, ::8] = 60
        self.wheel_m = Material.wrapped(Texture(tyre), 2 * np.pi * self.wheel_r, v_tpm=32 / 0.25)

    def center(self, t):
        pos, _ = self.path.at(self.speed * (t - self.t0))
        return pos + UP * self.height / 2

    def prims(self, t):
        s = self.speed * (t - self.t0)
        pos, f = self.path.at(s)
        yaw = math.atan2(f[1], f[0])
        rot = _rz(yaw)
        left = rot[:, 1]
        z0 = self.wheel_r * 0.6
        body = Box(
            pos + UP * (z0 + self.body_h / 2), [self.L / 2, self.W / 2, self.body_h / 2], rot=rot, material=self.body_m
        )
        cab_c = pos + UP * (z0 + self.body_h + self.cab_h / 2) - f * self.L * 0.05
        cab = Box(cab_c, [self.cab_len / 2, self.W / 2 * 0.9, self.cab_h / 2], rot=rot, material=self.cab_m)
        prims: list[Prim] = [body, cab]
        spin = s / self.wheel_r
        ref = math.cos(spin) * f + math.sin(spin) * UP
        for fx in (1, -1):
            for sy in (1, -1):
                c = pos + f * fx * (self.L / 2 - 0.75) + left * sy * (self.W / 2 - 0.12) + UP * self.wheel_r
                prims.append(
                    Capsule(c - left * 0.11, c + left * 0.11, self.wheel_r, ref=ref, flat=True, material=[self.wheel_m])
                )
        return self._tag(prims)


class Ball(DynamicObject):
    """A bouncing, rolling ball."""

    kind = "ball"

    def __init__(self, obj_id, rng, path: Path2D, speed: float, t0=0.0):
        self.obj_id = obj_id
        self.path, self.speed, self.t0 = path, speed, t0
        self.r = float(rng.uniform(0.11, 0.35))
        self.radius = self.r
        self.bounce_h = float(rng.uniform(0.2, 1.2))
        self.period = 2 * math.sqrt(2 * self.bounce_h / 9.81)
        self.height = 2 * self.r + self.bounce_h
        w, h = 128, 64
        c1, c2 = (
            tx.jitter_color(_t(rng), rng.uniform(20, 240, 3), 0.1),
            tx.jitter_color(_t(rng), rng.uniform(20, 240, 3), 0.1),
        )
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        pattern = np.sin(xx / w * 2 * np.pi * rng.integers(2, 6)) * np.sin(yy / h * np.pi * rng.integers(2, 5)) > 0
        img = np.where(pattern[..., None], c1, c2) * (1 + 0.05 * tx.grain(_t(rng), h, w))[..., None]
        tx.put_text_fit(img, tx.random_word(_t(rng), 2).upper(), (w * 0.3, h * 0.35, w * 0.4, h * 0.3), (250, 250, 250))
        self.mat = Material.wrapped(Texture(tx.to_u8(img)), 2 * np.pi * self.r, shininess=0.6)
        self.rot0 = Rotation.random(random_state=int(rng.integers(1 << 31))).as_matrix()

    def _state(self, t):
        s = self.speed * (t - self.t0)
        pos, f = self.path.at(s)
        tau = ((t - self.t0) / self.period) % 1.0
        z = self.r + 4 * self.bounce_h * tau * (1 - tau)
        axis = np.cross(UP, f)
        rot = Rotation.from_rotvec(axis * (s / self.r)).as_matrix() @ self.rot0
        return pos + UP * z, rot

    def center(self, t):
        return self._state(t)[0]

    def prims(self, t):
        c, rot = self._state(t)
        return self._tag([Sphere(c, self.r, rot=rot, material=[self.mat])])


class MovingBox(DynamicObject):
    """A rigid box that slides and turns on the ground or floats and tumbles (carts, drones, crates)."""

    kind = "box"

    def __init__(
        self, obj_id, rng, path: Path2D, speed: float, t0=0.0, tpm=80.0, floating: bool | None = None, size=None
    ):
        self.obj_id = obj_id
        self.path, self.speed, self.t0 = path, speed, t0
        self.half = np.asarray(size if size is not None else rng.uniform([0.2, 0.2, 0.15], [0.6, 0.45, 0.5]), float)
        self.floating = bool(rng.random() < 0.25) if floating is None else floating
        self.fz = rng.uniform(0.5, 1.4)
        self.spin = rng.uniform(-0.8, 0.8)
        self.radius = float(np.linalg.norm(self.half[:2]))
        self.height = 2 * self.half[2] + (self.fz if self.floating else 0)
        mats = []
        for f in range(6):
            a = [1, 1, 0, 0, 0, 0][f]
            w_m, h_m = (
                (2 * self.half[1], 2 * self.half[2])
                if a
                else (2 * self.half[0], 2 * self.half[2] if f < 4 else 2 * self.half[1])
            )
            w, h = tx.size_px(w_m, h_m, tpm, 512)
            img = tx.cardboard(_t(rng), w, h, tpm) if rng.random() < 0.6 else tx.poster(_t(rng), w, h)
            mats.append(Material.metric(Texture(img), tpm))
        self.mats = mats

    def _state(self, t):
        pos, f = self.path.at(self.speed * (t - self.t0))
        yaw = math.atan2(f[1], f[0]) + self.spin * (t - self.t0)
        rot = _rz(yaw)
        z = self.half[2]
        if self.floating:
            z += self.fz + 0.15 * math.sin(2.1 * t)
            rot = rot @ Rotation.from_euler("xy", [0.25 * math.sin(1.3 * t), 0.2 * math.cos(1.1 * t)]).as_matrix()
        return pos + UP * z, rot

    def center(self, t):
        return self._state(t)[0]

    def prims(self, t):
        c, rot = self._state(t)
        return self._tag([Box(c, self.half, rot=rot, material=self.mats)])


class Follower(DynamicObject):
    """A large object kept in front of a moving camera (the side of a truck, a crate carried by
    someone): it fills most of the frame, for the 'dynamic object > 80% of the frame' variant."""

    kind = "huge"

    def __init__(self, obj_id, rng, camera_path, distance: float, half_w: float, half_h: float, tpm: float = 60.0):
        self.obj_id = obj_id
        self.cam = camera_path
        self.d = distance
        self.half = np.array([half_w, 0.25, half_h])
        self.radius = half_w
        self.height = 2 * half_h
        self.lat = SmoothNoise1(rng, 0.1, 0.5)
        self.lat_amp = rng.uniform(0.0, 0.15) * half_w
        mats = []
        for _f in range(6):
            w, h = tx.size_px(2 * half_w, 2 * half_h, tpm, 1024)
            img = tx.poster(_t(rng), w, h) if rng.random() < 0.5 else car_side_panel(rng, w, h)
            mats.append(Material.metric(Texture(img), w / (2 * half_w)))
        self.mats = mats

    def _frame(self, t):
        rot, c = self.cam.c2w(t)
        fwd = rot[:, 2].copy()
        fwd[2] = 0.0
        fwd /= max(np.linalg.norm(fwd), 1e-9)
        right = np.cross(fwd, UP)
        center = c + fwd * (self.d + self.half[1]) + right * self.lat_amp * self.lat(t)
        return center, np.stack([right, fwd, UP], 1)

    def center(self, t):
        return self._frame(t)[0]

    def prims(self, t):
        c, rot = self._frame(t)
        return self._tag([Box(c, self.half, rot=rot, material=self.mats)])


class SmoothNoise1:
    def __init__(self, rng, fmin, fmax, n=4):
        self.f = rng.uniform(fmin, fmax, n)
        self.ph = rng.uniform(0, 2 * np.pi, n)

    def __call__(self, t):
        return float(np.mean(np.sin(2 * np.pi * self.f * t + self.ph))) * 1.4


def car_side_panel(rng, w, h):
    """Side of a truck/bus: paint, a big advert, rivets and dirt."""
    img = tx.colorize(tx.jitter_color(_t(rng), rng.uniform(30, 230, 3), 0.1), tx.noise(_t(rng), h, w, w / 6, 4), 0.08)
    pw, ph = int(w * rng.uniform(0.4, 0.8)), int(h * rng.uniform(0.3, 0.6))
    tx.paste(
        img,
        tx.poster(_t(rng), pw, ph).astype(np.float32),
        int(rng.integers(0, max(1, w - pw))),
        int(rng.integers(0, max(1, h - ph))),
    )
    for x in range(0, w, max(8, w // 20)):
        img[:, x : x + 1] *= 0.8
    return tx.to_u8(tx.dirt(_t(rng), img, 0.2, w / 4))
