"""Static scene layouts: an indoor room, a street and a plaza, built from textured primitives.

World frame: metres, z up, ground at z = 0. A :class:`Scene` also describes where the camera and
the moving objects may go (an area and 2-D obstacle rectangles) and what is worth looking at.
``tq`` scales texture resolution with the output resolution (1.0 at 854 px wide).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dynpose.domain.synth import decor
from dynpose.domain.synth import textures as tx
from dynpose.domain.synth.lighting import Lights
from dynpose.domain.synth.objects import Car, Path2D
from dynpose.domain.synth.raycast import Box, Capsule, Prim, Quad, Room, Sphere
from dynpose.domain.synth.textures import Material, Texture

UP = np.array([0.0, 0.0, 1.0])


def _t(rng: np.random.Generator) -> np.random.Generator:
    """A child generator for one texture: geometry draws then do not depend on texture sizes."""
    return np.random.default_rng(int(rng.integers(1 << 62)))


@dataclass
class Scene:
    layout: str
    static: list[Prim]
    lights: Lights
    sky: Texture | None
    area: tuple  # (x0, y0, x1, y1) where the camera and people may be
    obstacles: list = field(default_factory=list)  # (x0, y0, x1, y1) footprints of static solids
    walk_areas: list = field(default_factory=list)  # rectangles for people
    lanes: list = field(default_factory=list)  # (y, direction) for cars
    focus: list = field(default_factory=list)  # interesting 3-D points (orbit centres)
    extent: float = 10.0  # typical viewing distance scale (m)

    def free(self, xy: np.ndarray, margin: float = 0.5, area=None) -> np.ndarray:
        """Whether 2-D points are inside ``area`` (default: the scene area) and clear of obstacles."""
        xy = np.atleast_2d(xy)
        x0, y0, x1, y1 = area or self.area
        ok = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
        for ox0, oy0, ox1, oy1 in self.obstacles:
            inside = (
                (xy[:, 0] > ox0 - margin)
                & (xy[:, 0] < ox1 + margin)
                & (xy[:, 1] > oy0 - margin)
                & (xy[:, 1] < oy1 + margin)
            )
            ok &= ~inside
        return ok


def _mat(img: np.ndarray, w_m: float, h_m: float, **kw) -> Material:
    """Material for a face of w_m x h_m metres showing exactly ``img``."""
    tex = Texture(img)
    return Material(tex, tex.w / w_m, tex.h / h_m, density=max(tex.w / w_m, tex.h / h_m), **kw)


def _tiled(img: np.ndarray, period_m: float, rng=None, **kw) -> Material:
    """Material repeating ``img`` every period_m metres (u); v keeps the aspect ratio."""
    tex = Texture(img)
    s = tex.w / period_m
    off = rng.uniform(0, tex.w) if rng is not None else 0.0
    return Material(tex, s, s, off, off * 0.7, density=s, **kw)


def _face_sizes(half):
    hx, hy, hz = 2 * np.asarray(half, float)
    return [(hy, hz), (hy, hz), (hx, hz), (hx, hz), (hx, hy), (hx, hy)]


def box_materials(rng, half, tpm, gen, shared: bool = False) -> list[Material]:
    """One material per box face from ``gen(rng, w_px, h_px, tpm)``; ``shared`` reuses one texture."""
    sizes = _face_sizes(half)
    if shared:
        big = max(max(s) for s in sizes)
        w, h = tx.size_px(big, big, tpm, 1024)
        tex = Texture(gen(_t(rng), w, h, w / big))
        return [
            Material(tex, tex.w / big, tex.h / big, rng.uniform(0, tex.w), rng.uniform(0, tex.h), density=tex.w / big)
            for _ in range(6)
        ]
    out = []
    for w_m, h_m in sizes:
        w, h = tx.size_px(w_m, h_m, tpm, 1536)
        out.append(_mat(gen(_t(rng), w, h, min(w / w_m, h / h_m)), w_m, h_m))
    return out


def _plain(color, amount=0.1):
    def gen(rng, w, h, tpm):
        return tx.plaster(_t(rng), w, h, tpm, tx.jitter_color(_t(rng), color, amount))

    return gen


def _wood_gen(rng, w, h, tpm):
    return tx.wood(_t(rng), w, h, tpm)


def _metal_gen(color=(90, 95, 100)):
    def gen(rng, w, h, tpm):
        return tx.metal(_t(rng), w, h, color)

    return gen


def _cylinder(a, b, r, mat, **kw) -> Capsule:
    return Capsule(np.asarray(a, float), np.asarray(b, float), r, flat=True, material=[mat], **kw)


def _round_mat(rng, img, r, length):
    return Material.wrapped(Texture(img), 2 * np.pi * r, v_tpm=img.shape[0] / max(length, 0.05))


# ---------------------------------------------------------------------------------------------
# Furniture and street furniture (each returns prims and a 2-D footprint)


def _rot_about_z(yaw):
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def _place(center_xy, yaw, local_boxes, mats_list):
    """Boxes given in an item frame (x along the wall, y out of the wall) -> world Boxes."""
    rot = _rot_about_z(yaw)
    out = []
    for (c, half), mats in zip(local_boxes, mats_list):
        wc = np.array([center_xy[0], center_xy[1], 0.0]) + rot @ np.asarray(c, float)
        out.append(Box(wc, half, rot=rot, material=mats))
    return out


def _footprint(prims):
    lo = np.min([p.bounds()[0] for p in prims], 0)
    hi = np.max([p.bounds()[1] for p in prims], 0)
    return (lo[0], lo[1], hi[0], hi[1])


def shelf(rng, tq, width):
    d, h = rng.uniform(0.3, 0.4), rng.uniform(1.6, 2.2)
    half = [width / 2, d / 2, h / 2]
    mats = box_materials(rng, half, 90 * tq, _wood_gen, shared=True)
    w, hh = tx.size_px(width, h, 200 * tq, 2048)
    mats[2] = _mat(
        tx.books(_t(rng), w, hh, min(w / width, hh / h), shelves=max(3, int(h / 0.38))), width, h
    )  # front faces the room (+y)
    return [((0, d / 2, h / 2), half)], [mats]


def cabinet(rng, tq, width):
    d, h = rng.uniform(0.4, 0.6), rng.uniform(0.7, 1.1)
    half = [width / 2, d / 2, h / 2]
    mats = box_materials(rng, half, 80 * tq, _wood_gen, shared=True)
    mats[2] = _mat(decor.drawers(_t(rng), width, h, 160 * tq), width, h)
    boxes, all_mats = [((0, d / 2, h / 2), half)], [mats]
    x = -width / 2 + 0.1
    while x < width / 2 - 0.25:  # things on top
        sw = rng.uniform(0.12, 0.45)
        sh = rng.uniform(0.08, 0.45)
        sd = rng.uniform(0.12, min(0.35, d - 0.05))
        if x + sw > width / 2:
            break
        hh = [sw / 2, sd / 2, sh / 2]
        gen = (
            (lambda r, w_, h_, t_: tx.poster(r, w_, h_))
            if rng.random() < 0.5
            else (lambda r, w_, h_, t_: tx.cardboard(r, w_, h_, t_))
        )
        boxes.append(((x + sw / 2, d / 2, h + sh / 2), hh))
        all_mats.append(box_materials(rng, hh, 250 * tq, gen, shared=True))
        x += sw + rng.uniform(0.05, 0.3)
    return boxes, all_mats


def sofa(rng, tq, width):
    d = rng.uniform(0.8, 0.95)
    color = tx.jitter_color(_t(rng), rng.uniform(40, 200, 3), 0.1)

    def gen(r, w, h, t):
        return tx.fabric(r, w, h, color=color, pattern=r.choice(["solid", "plaid", "stripes"]))

    base = [width / 2, d / 2, 0.22]
    back = [width / 2, 0.1, 0.22]
    arm = [0.1, d / 2, 0.12]
    m = box_materials(rng, base, 90 * tq, gen, shared=True)
    boxes = [
        ((0, d / 2, 0.22), base),
        ((0, 0.1, 0.66), back),
        ((-width / 2 + 0.1, d / 2, 0.56), arm),
        ((width / 2 - 0.1, d / 2, 0.56), arm),
    ]
    return boxes, [m, m, m, m]


def desk(rng, tq, width):
    d, h = rng.uniform(0.6, 0.8), rng.uniform(0.72, 0.76)
    top = [width / 2, d / 2, 0.02]
    leg = [0.025, 0.025, (h - 0.04) / 2]
    mt = box_materials(rng, top, 150 * tq, _wood_gen, shared=True)
    ml = box_materials(rng, leg, 60 * tq, _metal_gen((60, 60, 65)), shared=True)
    boxes = [((0, d / 2, h - 0.02), top)]
    mats = [mt]
    for sx in (-1, 1):
        for sy in (0.05, d - 0.05):
            boxes.append(((sx * (width / 2 - 0.05), sy, (h - 0.04) / 2), leg))
            mats.append(ml)
    # A monitor and some books on top.
    mon = [rng.uniform(0.25, 0.35), 0.02, rng.uniform(0.16, 0.22)]
    mm = box_materials(rng, mon, 80 * tq, _metal_gen((25, 25, 28)), shared=True)
    w, hh = tx.size_px(2 * mon[0], 2 * mon[2], 400 * tq, 512)
    mm[2] = _mat(tx.poster(_t(rng), w, hh), 2 * mon[0], 2 * mon[2], emissive=0.9)  # screen faces the room (+y)
    boxes.append(((rng.uniform(-0.2, 0.2), 0.15, h + 0.06 + mon[2]), mon))
    mats.append(mm)
    bk = [rng.uniform(0.1, 0.16), rng.uniform(0.12, 0.2), rng.uniform(0.02, 0.08)]
    boxes.append(((width / 2 - 0.3, d / 2, h + bk[2]), bk))
    mats.append(box_materials(rng, bk, 300 * tq, lambda r, w_, h_, t_: tx.poster(r, w_, h_), shared=True))
    return boxes, mats


def stacked_boxes(rng, tq, width):
    boxes, mats = [], []
    x = -width / 2
    while x < width / 2 - 0.3:
        s = rng.uniform(0.3, 0.6)
        z = 0.0
        for _ in range(int(rng.integers(1, 4))):
            hh = [s / 2, s / 2 * rng.uniform(0.8, 1.0), s / 2 * rng.uniform(0.6, 1.0)]
            boxes.append(((x + s / 2 + rng.uniform(-0.03, 0.03), 0.35, z + hh[2]), hh))
            mats.append(
                box_materials(rng, hh, 160 * tq, lambda r, w_, h_, t_: tx.cardboard(r, w_, h_, t_), shared=True)
            )
            z += 2 * hh[2]
            s *= rng.uniform(0.8, 1.0)
        x += s + 0.05
    return boxes, mats


def plant(rng, tq, xy, scale=1.0):
    r_pot, h_pot = 0.18 * scale, 0.4 * scale
    pot_m = _round_mat(rng, tx.plaster(_t(rng), 64, 32, 64, tx.jitter_color(_t(rng), (170, 90, 60), 0.2)), r_pot, h_pot)
    leaf_m = Material.wrapped(Texture(tx.leaves(_t(rng), 256, 128)), 2 * np.pi * 0.4 * scale)
    x, y = xy
    prims = [
        _cylinder([x, y, 0], [x, y, h_pot], r_pot, pot_m),
        Sphere([x, y, h_pot + 0.35 * scale], 0.4 * scale, material=[leaf_m]),
        Sphere([x + 0.15 * scale, y - 0.1 * scale, h_pot + 0.7 * scale], 0.28 * scale, material=[leaf_m]),
    ]
    return prims


def table_with_chairs(rng, tq, center, yaw):
    w, d, h = rng.uniform(1.2, 2.0), rng.uniform(0.75, 1.0), rng.uniform(0.72, 0.76)
    top = [w / 2, d / 2, 0.025]
    leg = [0.03, 0.03, (h - 0.05) / 2]
    mt = box_materials(rng, top, 150 * tq, _wood_gen if rng.random() < 0.7 else _plain((230, 230, 225)), shared=True)
    ml = box_materials(rng, leg, 60 * tq, _metal_gen(), shared=True)
    boxes, mats = [((0, 0, h - 0.025), top)], [mt]
    for sx in (-1, 1):
        for sy in (-1, 1):
            boxes.append(((sx * (w / 2 - 0.06), sy * (d / 2 - 0.06), (h - 0.05) / 2), leg))
            mats.append(ml)
    # Chairs on the long sides.
    cm = box_materials(rng, [0.22, 0.22, 0.02], 100 * tq, _plain(tuple(rng.uniform(30, 220, 3))), shared=True)
    for sy in (-1, 1):
        for k in range(max(1, int(w / 0.7))):
            cx = -w / 2 + (k + 0.5) * w / max(1, int(w / 0.7)) + rng.uniform(-0.05, 0.05)
            cy = sy * (d / 2 + 0.2 + rng.uniform(0, 0.15))
            boxes.append(((cx, cy, 0.45), [0.22, 0.22, 0.02]))
            mats.append(cm)
            boxes.append(((cx, cy + sy * 0.2, 0.7), [0.22, 0.02, 0.23]))
            mats.append(cm)
            for lx in (-0.18, 0.18):
                for ly in (-0.18, 0.18):
                    boxes.append(((cx + lx, cy + ly, 0.22), [0.015, 0.015, 0.22]))
                    mats.append(ml)
    # Items on the table.
    for _ in range(int(rng.integers(1, 5))):
        hh = [rng.uniform(0.05, 0.2), rng.uniform(0.05, 0.15), rng.uniform(0.01, 0.12)]
        boxes.append(
            ((rng.uniform(-w / 2 + 0.25, w / 2 - 0.25), rng.uniform(-d / 2 + 0.2, d / 2 - 0.2), h + hh[2]), hh)
        )
        mats.append(box_materials(rng, hh, 300 * tq, lambda r, w_, h_, t_: tx.poster(r, w_, h_), shared=True))
    return _place(center, yaw, boxes, mats)


# ---------------------------------------------------------------------------------------------
# Layouts


def _indoor_lights(rng) -> Lights:
    el, az = np.radians(rng.uniform(45, 70)), rng.uniform(0, 2 * np.pi)
    warm = np.array([1.0, 0.93, 0.82]) if rng.random() < 0.6 else np.array([0.95, 0.97, 1.0])
    return Lights(
        sun_dir=np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)]),
        sun_rgb=warm * rng.uniform(0.6, 1.1),
        sky_rgb=warm * rng.uniform(0.55, 0.8),
        ground_rgb=warm * rng.uniform(0.25, 0.4),
        indoor=True,
    )


def _outdoor_lights(rng, overcast) -> Lights:
    el, az = np.radians(rng.uniform(25, 65)), rng.uniform(0, 2 * np.pi)
    sun = np.array([1.0, 0.94, 0.84]) * rng.uniform(2.2, 3.0) * (1 - 0.75 * overcast)
    return Lights(
        sun_dir=np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)]),
        sun_rgb=sun,
        sky_rgb=np.array([0.72, 0.82, 1.0]) * (0.45 + 0.5 * overcast),
        ground_rgb=np.array([0.9, 0.85, 0.78]) * (0.22 + 0.2 * overcast),
    )


FLOOR_TILES = [
    ((205, 195, 175), (160, 140, 115)),
    ((225, 225, 220), (120, 120, 125)),
    ((190, 110, 80), (170, 100, 75)),
    ((235, 235, 230), (40, 40, 45)),
    ((150, 160, 170), (200, 205, 210)),
    ((185, 175, 150), (185, 175, 150)),
]


def build_room(rng: np.random.Generator, tq: float = 1.0) -> Scene:
    W, D, H = rng.uniform(7.5, 13), rng.uniform(6.5, 10), rng.uniform(2.8, 3.8)
    floor_kind = rng.choice(["wood", "tiles", "carpet", "concrete", "pavers"])
    ft = 170 * tq
    fw, fh = tx.size_px(W, D, ft, 3072)
    fs = min(fw / W, fh / D)
    floor_img = {
        "wood": lambda: tx.wood(_t(rng), fw, fh, fs),
        "tiles": lambda: tx.tiles(
            _t(rng),
            fw,
            fh,
            fs,
            tile_m=rng.uniform(0.3, 0.6),
            checker=rng.random() < 0.3,
            palette=list(FLOOR_TILES[int(rng.integers(len(FLOOR_TILES)))]),
        ),
        "carpet": lambda: tx.carpet(_t(rng), fw, fh, fs),
        "concrete": lambda: tx.concrete(_t(rng), fw, fh, fs),
        "pavers": lambda: tx.pavers(_t(rng), fw, fh, fs),
    }[floor_kind]()
    wt = 190 * tq
    walls, windows = [], []
    door_wall = int(rng.integers(4))
    wall_rngs = [_t(rng) for _ in range(4)]  # windows depend on the wall texture: keep them off the geometry stream
    for f, (w_m, _h_m) in enumerate([(D, H), (D, H), (W, H), (W, H)]):
        img, win = decor.room_wall(wall_rngs[f], w_m, H, wt, door=(f == door_wall))
        walls.append(_mat(img, w_m, H))
        windows.append(win)
    ceil = _mat(decor.ceiling(_t(rng), W, D, 60 * tq), W, D)
    room = Room([0, 0, 0], [W, D, H], material=walls + [ceil, _mat(floor_img, W, D)], casts_shadow=False)
    static: list[Prim] = [room]
    frames = room.face_frames()
    for f in range(4):  # emissive window panes just inside the walls
        o, eu, ev, su, sv, n = frames[f]
        for u0, v0, u1, v1 in windows[f]:
            c = o + (u0 + u1) / 2 * eu + (v0 + v1) / 2 * ev + 0.01 * n
            w_px, h_px = tx.size_px(u1 - u0, v1 - v0, 100 * tq, 512)
            img = decor.window_view(wall_rngs[f], w_px, h_px)
            static.append(
                Quad(
                    c,
                    eu,
                    ev,
                    ((u1 - u0) / 2, (v1 - v0) / 2),
                    material=[_mat(img, u1 - u0, v1 - v0, emissive=1.6)],
                    casts_shadow=False,
                )
            )
    # Ceiling lights.
    for x in np.arange(W / 4, W, W / 2 if W < 10 else W / 3):
        for y in np.arange(D / 4, D, D / 2):
            img = np.full((16, 16, 3), 250, np.uint8)
            static.append(
                Quad(
                    [x, y, H - 0.01],
                    [1, 0, 0],
                    [0, -1, 0],
                    (0.3, 0.3),
                    material=[_mat(img, 0.6, 0.6, emissive=2.2)],
                    casts_shadow=False,
                )
            )
    obstacles = []
    # Furniture along the walls (x along the wall, y into the room).
    wall_specs = [((W, 0), np.pi / 2, D), ((0, D), -np.pi / 2, D), ((W, D), np.pi, W), ((0, 0), 0.0, W)]
    for origin, yaw, length in wall_specs:
        rot = _rot_about_z(yaw)
        along = rot[:, 0]
        pos = rng.uniform(0.2, 0.8)
        while pos < length - 0.8:
            width = rng.uniform(0.8, 2.2)
            if pos + width > length - 0.2:
                break
            if rng.random() < 0.25:
                pos += width
                continue
            kind = rng.choice(
                ["shelf", "cabinet", "sofa", "desk", "boxes", "plant"], p=[0.25, 0.2, 0.15, 0.15, 0.15, 0.1]
            )
            c = np.array(origin, float) + along[:2] * (pos + width / 2)
            if kind == "plant":
                inward = rot[:2, 1]
                prims = plant(rng, tq, c + inward * 0.35, scale=rng.uniform(0.8, 1.4))
            else:
                boxes, mats = {"shelf": shelf, "cabinet": cabinet, "sofa": sofa, "desk": desk, "boxes": stacked_boxes}[
                    kind
                ](rng, tq, width)
                # Items are defined with x along the wall and y into the room, origin at the wall.
                prims = _place(c + rot[:2, 1] * 0.02, yaw, boxes, mats)
            static += prims
            obstacles.append(_footprint(prims))
            pos += width + rng.uniform(0.1, 0.8)
    focus = []
    margin = 1.3
    for _ in range(int(rng.integers(0, 3))):  # tables in the middle
        c = rng.uniform([margin + 1.5, margin + 1.2], [W - margin - 1.5, D - margin - 1.2])
        prims = table_with_chairs(rng, tq, c, rng.uniform(0, np.pi))
        fp = _footprint(prims)
        if any(not (fp[2] < o[0] or fp[0] > o[2] or fp[3] < o[1] or fp[1] > o[3]) for o in obstacles):
            continue
        static += prims
        obstacles.append(fp)
        focus.append(np.array([c[0], c[1], 0.8]))
    if rng.random() < 0.4:  # a rug
        c = rng.uniform([W * 0.3, D * 0.3], [W * 0.7, D * 0.7])
        rw, rd = rng.uniform(1.5, 3), rng.uniform(1.2, 2.2)
        w, h = tx.size_px(rw, rd, 120 * tq, 1024)
        static.append(
            Quad(
                [c[0], c[1], 0.005],
                [1, 0, 0],
                [0, 1, 0],
                (rw / 2, rd / 2),
                material=[_mat(tx.carpet(_t(rng), w, h, w / rw), rw, rd)],
                casts_shadow=False,
            )
        )
    focus.append(np.array([W / 2, D / 2, 1.0]))
    return Scene(
        "room",
        static,
        _indoor_lights(rng),
        None,
        area=(margin, margin, W - margin, D - margin),
        obstacles=obstacles,
        walk_areas=[(margin - 0.4, margin - 0.4, W - margin + 0.4, D - margin + 0.4)],
        focus=focus,
        extent=min(W, D),
    )


def lamp_post(rng, tq, xy, h=None):
    h = h or rng.uniform(4, 6)
    m = _round_mat(rng, tx.metal(_t(rng), 32, 64, tx.jitter_color(_t(rng), (50, 55, 60), 0.2)), 0.07, h)
    head = Box(
        [xy[0], xy[1], h + 0.1],
        [0.25, 0.15, 0.1],
        material=box_materials(rng, [0.25, 0.15, 0.1], 40, _metal_gen((40, 40, 45)), shared=True),
    )
    return [_cylinder([xy[0], xy[1], 0], [xy[0], xy[1], h], 0.07, m), head]


def tree(rng, tq, xy, scale=1.0):
    th = rng.uniform(2.0, 3.2) * scale
    trunk = _cylinder(
        [xy[0], xy[1], 0],
        [xy[0], xy[1], th],
        0.13 * scale,
        _round_mat(rng, tx.bark(_t(rng), 64, 128), 0.13 * scale, th),
    )
    r = rng.uniform(1.3, 2.2) * scale
    leaf = Material.wrapped(
        Texture(tx.leaves(_t(rng), int(512 * tq) // 8 * 8 + 64, int(256 * tq) // 8 * 8 + 32)), 2 * np.pi * r
    )
    prims = [trunk, Sphere([xy[0], xy[1], th + r * 0.8], r, material=[leaf])]
    if rng.random() < 0.6:
        prims.append(
            Sphere(
                [xy[0] + rng.uniform(-0.6, 0.6), xy[1] + rng.uniform(-0.6, 0.6), th + r * 1.5], r * 0.7, material=[leaf]
            )
        )
    return prims


def bench(rng, tq, xy, yaw):
    seat = [0.8, 0.22, 0.03]
    back = [0.8, 0.03, 0.2]
    leg = [0.04, 0.2, 0.22]
    mw = box_materials(rng, seat, 120 * tq, _wood_gen, shared=True)
    mm = box_materials(rng, leg, 40 * tq, _metal_gen((40, 40, 40)), shared=True)
    boxes = [((0, 0, 0.45), seat), ((0, 0.2, 0.75), back), ((-0.7, 0, 0.22), leg), ((0.7, 0, 0.22), leg)]
    return _place(xy, yaw, boxes, [mw, mw, mm, mm])


def kiosk(rng, tq, xy, yaw):
    half = [rng.uniform(0.8, 1.5), rng.uniform(0.8, 1.2), rng.uniform(1.1, 1.4)]
    mats = box_materials(rng, half, 120 * tq, lambda r, w, h, t: tx.poster(r, w, h))
    return _place(xy, yaw, [((0, 0, half[2]), half)], [mats])


def _buildings_row(rng, tq, x0, x1, y_front, side, depth_range=(8, 14), height_range=(6, 24), axis=0, near=25.0):
    """Boxes along a line; ``side`` +1 puts them at larger coordinate; facades face the line.
    Facades farther than ``near`` metres from the origin get proportionally coarser textures."""
    prims, x = [], x0
    while x < x1:
        bw = rng.uniform(7, 18)
        if rng.random() < 0.15:  # alley
            x += rng.uniform(1.5, 4)
        bd, bh = rng.uniform(*depth_range), rng.uniform(*height_range)
        setback = rng.uniform(0, 0.5)
        cx = x + bw / 2
        cy = y_front + side * (setback + bd / 2)
        c = np.array([cx, cy, bh / 2]) if axis == 0 else np.array([cy, cx, bh / 2])
        half = [bw / 2, bd / 2, bh / 2] if axis == 0 else [bd / 2, bw / 2, bh / 2]
        mats = [None] * 6
        sides = box_materials(rng, half, 30 * tq, lambda r, w, h, t: decor.side_wall(r, w / t, h / t, t), shared=True)
        for f in range(6):
            mats[f] = sides[f]
        # The face towards the line carries the detailed facade.
        front = (3 if side > 0 else 2) if axis == 0 else (1 if side > 0 else 0)
        detail = min(1.0, max(0.3, near / max(abs(cx), 1e-3)))
        mats[front] = _mat(decor.facade(_t(rng), bw, bh, 120 * tq * detail), bw, bh)
        prims.append(Box(c, half, material=mats, tag="building"))
        x += bw
    return prims


def build_street(rng: np.random.Generator, tq: float = 1.0) -> Scene:
    rw, sw, L = rng.uniform(6.5, 10), rng.uniform(2.8, 4.5), 60.0
    overcast = float(rng.uniform(0, 0.7))
    lights = _outdoor_lights(rng, overcast)
    static: list[Prim] = []
    period = 24.0
    gt = 120 * tq
    w, h = tx.size_px(period, rw, gt, 3072)
    marks = [("line", rw / 2, 0.12, True), ("line", 0.3, 0.1, False), ("line", rw - 0.3, 0.1, False)]
    if rng.random() < 0.6:
        marks.append(("zebra", 2.0, 6.0, 0.6, rw - 0.6))
    road_img = tx.asphalt(
        _t(rng),
        w,
        h,
        min(w / period, h / rw),
        markings=[(m[0], *(np.array(m[1:]) * 1.0)) if m[0] == "zebra" else m for m in marks],
    )
    road = Material(Texture(road_img), w / period, h / rw, rng.uniform(0, w), 0.0, density=w / period)
    static.append(
        Quad([0, 0, 0], [1, 0, 0], [0, 1, 0], (L + 20, rw / 2), material=[road], casts_shadow=False, tag="ground")
    )
    sw_kind = rng.choice(["pavers", "concrete", "tiles"])
    for side in (-1, 1):
        w, h = tx.size_px(period, sw, gt, 3072)
        s = min(w / period, h / sw)
        img = (
            tx.pavers(_t(rng), w, h, s)
            if sw_kind == "pavers"
            else tx.concrete(_t(rng), w, h, s)
            if sw_kind == "concrete"
            else tx.tiles(_t(rng), w, h, s, tile_m=0.5)
        )
        m = Material(Texture(img), w / period, h / sw, rng.uniform(0, w), 0.0, density=w / period)
        static.append(
            Quad(
                [0, side * (rw / 2 + sw / 2), 0.0],
                [1, 0, 0],
                [0, 1, 0],
                (L + 20, sw / 2),
                material=[m],
                casts_shadow=False,
                tag="ground",
            )
        )
        curb = [L + 20, 0.08, 0.07]
        static.append(
            Box(
                [0, side * (rw / 2 + 0.08), 0.07],
                curb,
                material=box_materials(rng, curb, 60 * tq, lambda r, w_, h_, t: tx.concrete(r, w_, h_, t), shared=True),
                casts_shadow=False,
            )
        )
    # Far ground for alleys and street ends.
    gimg = tx.concrete(_t(rng), 512, 512, 40 * tq)
    static.append(
        Quad(
            [0, 0, -0.02],
            [1, 0, 0],
            [0, 1, 0],
            (400, 400),
            material=[_tiled(gimg, 12.0, rng)],
            casts_shadow=False,
            tag="far",
        )
    )
    y_front = rw / 2 + sw
    static += _buildings_row(rng, tq, -L, L, y_front, 1)
    static += _buildings_row(rng, tq, -L, L, -y_front, -1)
    for sx in (-1, 1):  # close the vista at both ends
        bh = rng.uniform(12, 30)
        half = [6, y_front + 20, bh / 2]
        mats = box_materials(rng, half, 20 * tq, lambda r, w, h, t: decor.side_wall(r, w / t, h / t, t), shared=True)
        mats[1 if sx > 0 else 0] = _mat(decor.facade(_t(rng), 2 * half[1], bh, 40 * tq), 2 * half[1], bh)
        static.append(Box([sx * (L + 6), 0, bh / 2], half, material=mats, tag="building"))
    obstacles = []
    # Street furniture on the curb side of both sidewalks.
    for side in (-1, 1):
        yc = side * (rw / 2 + 0.55)
        x = -L + rng.uniform(0, 8)
        while x < L:
            k = rng.random()
            if k < 0.3:
                prims = lamp_post(rng, tq, (x, yc))
            elif k < 0.55:
                prims = tree(rng, tq, (x, yc + side * 0.2), rng.uniform(0.8, 1.2))
            elif k < 0.7:
                prims = bench(rng, tq, (x, side * (rw / 2 + sw - 0.5)), 0.0 if side < 0 else np.pi)
            elif k < 0.8:
                m = _round_mat(rng, tx.metal(_t(rng), 64, 64, tx.jitter_color(_t(rng), (50, 80, 60), 0.3)), 0.3, 0.9)
                prims = [_cylinder([x, yc, 0], [x, yc, 0.9], 0.3, m)]
            elif k < 0.9:
                prims = kiosk(rng, tq, (x, side * (rw / 2 + sw / 2)), 0.0)
            else:
                prims = [
                    _cylinder(
                        [x + dx, yc, 0], [x + dx, yc, 0.9], 0.06, _round_mat(rng, tx.metal(_t(rng), 32, 32), 0.06, 0.9)
                    )
                    for dx in (0, 1.2, 2.4)
                ]
            static += prims
            obstacles.append(_footprint(prims))
            x += rng.uniform(6, 14)
        # Parked cars in the lane next to the curb.
        x = -L + rng.uniform(0, 10)
        while x < L - 5:
            if rng.random() < 0.55:
                path = Path2D([[x, side * (rw / 2 - 1.1)], [x + (1 if side > 0 else -1) * 0.01, side * (rw / 2 - 1.1)]])
                car = Car(0, rng, path, 0.0, tpm=60 * tq, static=True)
                prims = car.prims(0.0)
                static += prims
                obstacles.append(_footprint(prims))
            x += rng.uniform(5.5, 9)
    sky = Texture(tx.sky(_t(rng), overcast=overcast))
    area = (-16.0, -(rw / 2 + sw - 0.5), 16.0, rw / 2 + sw - 0.5)
    walk = [(-40.0, rw / 2 + 0.9, 40.0, rw / 2 + sw - 0.4), (-40.0, -(rw / 2 + sw - 0.4), 40.0, -(rw / 2 + 0.9))]
    lanes = [(-rw / 4, 1.0), (rw / 4, -1.0)]
    focus = [np.array([rng.uniform(-10, 10), rng.uniform(-rw / 2, rw / 2), 1.0]) for _ in range(3)]
    return Scene(
        "street",
        static,
        lights,
        sky,
        area=area,
        obstacles=obstacles,
        walk_areas=walk,
        lanes=lanes,
        focus=focus,
        extent=15.0,
    )


def build_plaza(rng: np.random.Generator, tq: float = 1.0) -> Scene:
    S = rng.uniform(26, 40)
    overcast = float(rng.uniform(0, 0.7))
    lights = _outdoor_lights(rng, overcast)
    static: list[Prim] = []
    period = 20.0
    w, h = tx.size_px(period, period, 110 * tq, 2560)
    s = min(w, h) / period
    stone = [tx.jitter_color(_t(rng), (190, 180, 165), 0.06), tx.jitter_color(_t(rng), (120, 115, 110), 0.06)]
    img = (
        tx.pavers(_t(rng), w, h, s)
        if rng.random() < 0.6
        else tx.tiles(_t(rng), w, h, s, tile_m=rng.uniform(0.4, 1.0), checker=rng.random() < 0.4, palette=stone)
    )
    static.append(
        Quad(
            [0, 0, 0],
            [1, 0, 0],
            [0, 1, 0],
            (S / 2 + 30, S / 2 + 30),
            material=[_tiled(img, period, rng)],
            casts_shadow=False,
            tag="ground",
        )
    )
    half = S / 2
    static += _buildings_row(rng, tq, -half - 10, half + 10, half, 1, axis=0)
    static += _buildings_row(rng, tq, -half - 10, half + 10, -half, -1, axis=0)
    static += _buildings_row(rng, tq, -half + 2, half - 2, half, 1, axis=1)
    static += _buildings_row(rng, tq, -half + 2, half - 2, -half, -1, axis=1)
    obstacles = []
    focus = []
    kind = rng.choice(["fountain", "statue", "trees"])
    c = rng.uniform(-S / 8, S / 8, 2)
    if kind == "fountain":
        r = rng.uniform(1.8, 3.0)
        stone = _round_mat(rng, tx.concrete(_t(rng), 256, 32, 40), r, 0.5)
        static += [
            _cylinder([c[0], c[1], 0], [c[0], c[1], 0.5], r, stone),
            _cylinder(
                [c[0], c[1], 0.5], [c[0], c[1], 2.0], 0.35, _round_mat(rng, tx.concrete(_t(rng), 64, 64, 40), 0.35, 1.5)
            ),
            Sphere(
                [c[0], c[1], 2.3], 0.45, material=[Material.wrapped(Texture(tx.concrete(_t(rng), 64, 32, 40)), 2.8)]
            ),
        ]
        obstacles.append((c[0] - r, c[1] - r, c[0] + r, c[1] + r))
    elif kind == "statue":
        ped = [0.8, 0.8, 0.8]
        static.append(
            Box(
                [c[0], c[1], 0.8],
                ped,
                material=box_materials(
                    rng, ped, 100 * tq, lambda r_, w_, h_, t_: tx.concrete(r_, w_, h_, t_), shared=True
                ),
            )
        )
        bronze = _round_mat(rng, tx.metal(_t(rng), 64, 64, (90, 75, 50)), 0.3, 1.0)
        static += [
            Capsule([c[0], c[1], 1.7], [c[0], c[1], 2.6], 0.3, material=[bronze]),
            Sphere([c[0], c[1], 3.1], 0.25, material=[bronze]),
            Capsule([c[0] - 0.3, c[1], 2.5], [c[0] - 0.7, c[1] + 0.2, 3.2], 0.09, material=[bronze]),
        ]
        obstacles.append((c[0] - 0.9, c[1] - 0.9, c[0] + 0.9, c[1] + 0.9))
    else:
        for _ in range(4):
            p = c + rng.uniform(-4, 4, 2)
            prims = tree(rng, tq, p)
            static += prims
            obstacles.append(_footprint(prims))
    focus.append(np.array([c[0], c[1], 1.2]))
    for _ in range(int(rng.integers(4, 10))):
        p = rng.uniform(-half + 2, half - 2, 2)
        k = rng.random()
        prims = (
            lamp_post(rng, tq, p)
            if k < 0.35
            else bench(rng, tq, p, rng.uniform(0, np.pi))
            if k < 0.65
            else kiosk(rng, tq, p, rng.uniform(0, np.pi))
            if k < 0.8
            else tree(rng, tq, p)
        )
        static += prims
        obstacles.append(_footprint(prims))
    sky = Texture(tx.sky(_t(rng), overcast=overcast))
    area = (-half + 2.5, -half + 2.5, half - 2.5, half - 2.5)
    return Scene(
        "plaza",
        static,
        lights,
        sky,
        area=area,
        obstacles=obstacles,
        walk_areas=[area],
        lanes=[],
        focus=focus,
        extent=S / 2,
    )


LAYOUTS = {"room": build_room, "street": build_street, "plaza": build_plaza}
