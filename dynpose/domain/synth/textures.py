"""Procedural textures and their mip-mapped sampler.

Textures are uint8 RGB images generated once per scene from the scene's random generator. They
are deliberately busy and non-repetitive (multi-scale noise, per-brick/tile/plank variation,
dirt, decals): feature-based SfM needs many distinctive keypoints. Surfaces are textured in
metres: a material maps metric surface coordinates to texels with ``tpm`` texels per metre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# ---------------------------------------------------------------------------------------------
# Sampler


# sRGB-ish (gamma 2.2) 8-bit -> linear 16-bit: textures are filtered and shaded in linear light.
SRGB_TO_LIN16 = np.round((np.arange(256) / 255.0) ** 2.2 * 65535).astype(np.uint16)


def sample_bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``img`` bilinearly sampled at K pixel coordinates (x, y), edges repeated: (K, C) values.

    cv2.remap wants 2-D maps: the points are laid out in rows of 1024 (padded), which is far
    faster than scipy's map_coordinates on textures of this size.
    """
    n = len(x)
    cols = 1024
    rows = (n + cols - 1) // cols
    pad = rows * cols - n
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    if pad:
        x = np.concatenate([x, np.zeros(pad, np.float32)])
        y = np.concatenate([y, np.zeros(pad, np.float32)])
    out = cv2.remap(
        img, x.reshape(rows, cols), y.reshape(rows, cols), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return out.reshape(rows * cols, -1)[:n]


class Texture:
    """A texture with its mip chain packed in one atlas, sampled with trilinear filtering.

    8-bit sRGB input is stored as linear 16-bit; ``sample`` returns linear floats in [0, 1].

    Level 0 sits at the left; levels 1.. are stacked in a column to its right. Each level has a
    wrap-around border of ``PAD`` texels so bilinear lookups at the edges wrap (tiling textures).
    """

    PAD = 2

    def __init__(self, img: np.ndarray, max_levels: int = 6):
        img = np.ascontiguousarray(img)
        self.scale = np.float32(1.0)
        if img.dtype == np.uint8:
            img = SRGB_TO_LIN16[img]
        if img.dtype == np.uint16:
            self.scale = np.float32(1.0 / 65535)
        if img.ndim == 2:
            img = img[..., None]
        self.h, self.w = img.shape[:2]
        levels = [img]
        while len(levels) < max_levels and min(levels[-1].shape[:2]) >= 8:
            nxt = cv2.pyrDown(levels[-1])
            levels.append(nxt if nxt.ndim == 3 else nxt[..., None])
        p = self.PAD
        col_w = levels[1].shape[1] + 2 * p if len(levels) > 1 else 0
        col_h = sum(lv.shape[0] + 2 * p for lv in levels[1:])
        atlas_h = max(self.h + 2 * p, col_h)
        atlas = np.zeros((atlas_h, self.w + 2 * p + col_w, img.shape[2]), img.dtype)
        ox, oy, sw, sh = [], [], [], []
        x, y = 0, 0
        for i, lv in enumerate(levels):
            padded = cv2.copyMakeBorder(lv, p, p, p, p, cv2.BORDER_WRAP)
            if padded.ndim == 2:
                padded = padded[..., None]
            if i == 1:
                x, y = self.w + 2 * p, 0
            atlas[y : y + padded.shape[0], x : x + padded.shape[1]] = padded
            ox.append(x + p)
            oy.append(y + p)
            sw.append(lv.shape[1])
            sh.append(lv.shape[0])
            if i >= 1:
                y += padded.shape[0]
        self.atlas = atlas if atlas.shape[2] > 1 else atlas[..., 0]
        self.channels = img.shape[2]
        self.nlev = len(levels)
        self.ox = np.array(ox, np.float32)
        self.oy = np.array(oy, np.float32)
        self.sw = np.array(sw, np.float32)
        self.sh = np.array(sh, np.float32)
        # Scale of level l relative to level 0 (exact for odd sizes too).
        self.fx = self.sw / self.w
        self.fy = self.sh / self.h
        self.mean = img.reshape(-1, img.shape[2]).mean(0) * self.scale  # linear

    def _lookup(self, u, v, lev):
        fx, fy = self.fx[lev], self.fy[lev]
        w, h = self.sw[lev], self.sh[lev]
        mx = np.mod(u * fx, w) + self.ox[lev] - 0.5
        my = np.mod(v * fy, h) + self.oy[lev] - 0.5
        return sample_bilinear(self.atlas, mx, my)

    def sample(self, u: np.ndarray, v: np.ndarray, lod: np.ndarray | None = None) -> np.ndarray:
        """Colours (K, C) float32 at level-0 texel coordinates (u, v) (texel centres at +0.5)."""
        u = np.asarray(u, np.float32)
        v = np.asarray(v, np.float32)
        if lod is None or self.nlev == 1:
            return self._lookup(u, v, np.zeros(len(u), np.int64)).astype(np.float32) * self.scale
        lod = np.clip(lod, 0, self.nlev - 1 - 1e-3)
        l0 = lod.astype(np.int64)
        frac = (lod - l0).astype(np.float32)[:, None]
        a = self._lookup(u, v, l0).astype(np.float32)
        if (frac > 0.02).any():
            b = self._lookup(u, v, l0 + 1).astype(np.float32)
            a += (b - a) * frac
        return a * self.scale


@dataclass
class Material:
    """How a face is textured: texel = metric_coord * scale + offset (per axis).

    ``density`` is texels per metre on the surface (for mip selection). ``lightmap`` is an
    optional float32 (H, W, 2) image of (sun visibility, ambient occlusion) at ``lm_tpm`` texels
    per metre in the same metric coordinates. ``emissive`` > 0 makes the face self-lit.
    """

    tex: Texture
    u_scale: float
    v_scale: float
    u_off: float = 0.0
    v_off: float = 0.0
    density: float = 1.0
    lightmap: np.ndarray | None = None
    lm_tpm: float = 1.0
    lm_tpm_v: float = 1.0
    emissive: float = 0.0
    shininess: float = 0.0

    @staticmethod
    def metric(tex: Texture, tpm: float, u_off=0.0, v_off=0.0, **kw) -> "Material":
        return Material(tex, tpm, tpm, u_off, v_off, density=tpm, **kw)

    @staticmethod
    def wrapped(tex: Texture, circumference: float, v_tpm: float | None = None, **kw) -> "Material":
        """For round primitives: u is a fraction of the circumference; v metres (or a fraction)."""
        u_scale = tex.w
        v_scale = v_tpm if v_tpm is not None else tex.h
        return Material(tex, u_scale, v_scale, density=tex.w / max(circumference, 1e-3), **kw)


# ---------------------------------------------------------------------------------------------
# Noise building blocks


def noise(
    rng: np.random.Generator, h: int, w: int, cell: float, octaves: int = 4, persistence: float = 0.5
) -> np.ndarray:
    """Tileable multi-octave value noise, float32, roughly zero-mean with unit-ish amplitude.

    ``cell`` is the size in texels of the coarsest octave's lattice cell.
    """
    acc = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        cy = max(1, int(round(h / cell)))
        cx = max(1, int(round(w / cell)))
        g = rng.standard_normal((cy, cx), dtype=np.float32)
        g = np.pad(g, 2, mode="wrap")
        oh = int(round((cy + 4) * h / cy))
        ow = int(round((cx + 4) * w / cx))
        up = cv2.resize(g, (ow, oh), interpolation=cv2.INTER_CUBIC)
        y0 = int(round(2 * h / cy))
        x0 = int(round(2 * w / cx))
        acc += amp * up[y0 : y0 + h, x0 : x0 + w]
        total += amp * amp
        amp *= persistence
        cell /= 2
        if cell < 1.0:
            break
    return acc / np.float32(math.sqrt(total))


def grain(rng: np.random.Generator, h: int, w: int, sigma: float = 0.7) -> np.ndarray:
    """Fine per-texel noise, slightly blurred (stone, asphalt, fabric grain)."""
    g = rng.standard_normal((h, w), dtype=np.float32)
    if sigma > 0:
        g = cv2.GaussianBlur(g, (0, 0), sigma)
        g /= max(float(g.std()), 1e-6)
    return g


def colorize(base_rgb, field: np.ndarray, amount: float) -> np.ndarray:
    """base colour (0..255) modulated by a noise field -> float32 (h, w, 3)."""
    base = np.asarray(base_rgb, np.float32)
    return base[None, None, :] * (1.0 + amount * field[..., None])


def to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(img, 0, 255).astype(np.uint8)


def jitter_color(rng, rgb, amount=0.12):
    """A colour near ``rgb``: mostly brightness variation, a little hue (real materials vary so)."""
    c = np.asarray(rgb, np.float32) * (1 + amount * rng.standard_normal() + 0.3 * amount * rng.standard_normal(3))
    return np.clip(c, 5, 250)


def palette_lut(rng, palette, n: int = 4096, amount: float = 0.1) -> np.ndarray:
    """n colours drawn from ``palette`` with per-entry jitter (one per brick / tile / stone)."""
    pal = np.asarray(palette, np.float32)[rng.integers(0, len(palette), n)]
    c = pal * (1 + amount * rng.standard_normal((n, 1)) + 0.3 * amount * rng.standard_normal((n, 3)))
    return np.clip(c, 5, 250).astype(np.float32)


def dirt(rng, img: np.ndarray, strength: float = 0.25, cell: float = 80.0) -> np.ndarray:
    """Large-scale multiplicative weathering: makes repeated patterns unique.

    Computed at quarter resolution (it is smooth anyway) and upsampled."""
    h, w = img.shape[:2]
    k = 4 if min(h, w) >= 64 else 1
    n = noise(rng, max(1, h // k), max(1, w // k), cell / k, octaves=5, persistence=0.6)
    if k > 1:
        n = cv2.resize(n, (w, h), interpolation=cv2.INTER_LINEAR)
    return img.astype(np.float32) * (1.0 + strength * np.tanh(n))[..., None]


# ---------------------------------------------------------------------------------------------
# Surface materials (all return uint8 RGB; sizes in texels, ``tpm`` texels per metre)


def size_px(w_m: float, h_m: float, tpm: float, cap: int = 3072) -> tuple[int, int]:
    """Texture size for a face of w_m x h_m metres, a multiple of 8 texels and at most ``cap``."""
    w = int(np.clip(round(w_m * tpm / 8) * 8, 16, cap))
    h = int(np.clip(round(h_m * tpm / 8) * 8, 16, cap))
    return w, h


def plaster(rng, w, h, tpm, color) -> np.ndarray:
    n = noise(rng, h, w, 0.3 * tpm, octaves=7, persistence=0.65)
    img = colorize(color, n, 0.06) + 8.0 * grain(rng, h, w, 0.6)[..., None]
    return to_u8(dirt(rng, img, 0.08, 1.5 * tpm))


def concrete(rng, w, h, tpm, color=(150, 148, 142)) -> np.ndarray:
    n = noise(rng, h, w, 0.25 * tpm, octaves=7, persistence=0.7)
    img = colorize(jitter_color(rng, color, 0.05), n, 0.07) + 12.0 * grain(rng, h, w, 0.5)[..., None]
    # Pores and small stains: dark where fine noise peaks.
    pores = grain(rng, h, w, max(0.6, 0.004 * tpm))
    img *= (1 - 0.35 * np.clip(pores - 1.8, 0, 1))[..., None]
    return to_u8(dirt(rng, img, 0.12, 1.5 * tpm))


def bricks(rng, w, h, tpm, palette=None) -> np.ndarray:
    palette = palette or [(150, 70, 50), (170, 90, 60), (120, 55, 45), (180, 120, 90), (140, 80, 70)]
    bw, bh, mortar = 0.23 * tpm, 0.075 * tpm, max(1.0, 0.011 * tpm)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    row = np.floor(yy / bh)
    off = (row % 2) * bw * 0.5
    col = np.floor((xx + off) / bw)
    bid = (row * 977 + col * 131).astype(np.int64) % 4096
    img = palette_lut(rng, palette, 4096, 0.12)[bid]
    img *= (1 + 0.10 * noise(rng, h, w, 0.05 * tpm, 3))[..., None]
    is_mortar = ((yy % bh) < mortar) | (((xx + off) % bw) < mortar)
    img[is_mortar] = np.float32(rng.uniform(150, 200)) * np.array([1.0, 0.97, 0.92], np.float32)
    img += 10.0 * grain(rng, h, w, 0.5)[..., None]
    return to_u8(dirt(rng, img, 0.3, 1.2 * tpm))


def tiles(
    rng, w, h, tpm, tile_m=0.4, palette=None, grout=(90, 90, 88), checker=False, vein: float = 0.25
) -> np.ndarray:
    palette = palette or [(200, 196, 186), (180, 175, 165), (120, 118, 115)]
    t = tile_m * tpm
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r, c = np.floor(yy / t), np.floor(xx / t)
    tid = (r * 613 + c * 89).astype(np.int64) % 4096
    if checker:
        a, b = palette_lut(rng, palette[:1], 4096, 0.05), palette_lut(rng, palette[1:2], 4096, 0.05)
        img = np.where((((r + c) % 2) == 0)[..., None], a[tid], b[tid])
    else:
        img = palette_lut(rng, palette, 4096, 0.07)[tid]
    # Marble-like veins.
    n = noise(rng, h, w, 0.3 * tpm, 5, 0.6)
    veins = np.exp(-np.abs(np.sin(6 * n + xx / (0.3 * tpm))) * 9.0)
    img *= (1 - vein * veins)[..., None]
    gw = max(1.0, 0.008 * tpm)
    is_grout = ((yy % t) < gw) | ((xx % t) < gw)
    img[is_grout] = grout
    img += 6.0 * grain(rng, h, w, 0.5)[..., None]
    return to_u8(dirt(rng, img, 0.25, 1.5 * tpm))


def pavers(rng, w, h, tpm, palette=None) -> np.ndarray:
    """Running-bond stone pavers with per-stone colour (plazas, sidewalks)."""
    palette = palette or [(160, 150, 140), (150, 143, 135), (168, 155, 140), (140, 135, 128)]
    pw, ph = rng.uniform(0.2, 0.4) * tpm, rng.uniform(0.12, 0.2) * tpm
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    row = np.floor(yy / ph)
    off = ((row * 0.37) % 1.0) * pw
    col = np.floor((xx + off) / pw)
    sid = (row * 733 + col * 197).astype(np.int64) % 4096
    img = palette_lut(rng, palette, 4096, 0.1)[sid] * (1 + 0.12 * noise(rng, h, w, 0.06 * tpm, 3))[..., None]
    gap = max(1.0, 0.012 * tpm)
    img[((yy % ph) < gap) | (((xx + off) % pw) < gap)] = (70, 68, 64)
    img += 12.0 * grain(rng, h, w, 0.5)[..., None]
    return to_u8(dirt(rng, img, 0.3, 1.0 * tpm))


def wood(rng, w, h, tpm, base=None) -> np.ndarray:
    """Floor planks running along u, with grain, knots and per-plank tone."""
    base = base if base is not None else jitter_color(rng, (150, 100, 60), 0.15)
    pw = rng.uniform(0.1, 0.22) * tpm
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    row = np.floor(yy / pw)
    plank_len = rng.uniform(0.8, 2.0) * tpm
    off = ((row * 0.618) % 1.0) * plank_len
    seg = np.floor((xx + off) / plank_len)
    pid = (row * 331 + seg * 57).astype(np.int64) % 4096
    tone = (1 + 0.18 * rng.standard_normal(4096)).astype(np.float32)
    n = noise(rng, h, w, 0.15 * tpm, 4, 0.5)
    grain_f = np.sin((yy + 6 * n * pw / 4) / max(pw / 10, 1.0) + pid * 0.7) * 0.5 + 0.5
    img = base[None, None, :] * (tone[pid] * (0.82 + 0.25 * grain_f))[..., None]
    img *= (1 + 0.08 * noise(rng, h, w, 0.02 * tpm, 2))[..., None]
    img[((yy % pw) < max(1, 0.006 * tpm)) | (((xx + off) % plank_len) < max(1, 0.006 * tpm))] *= 0.45
    for _ in range(int(w * h / (tpm * tpm) * 2)):  # knots
        cv2.ellipse(
            img,
            (int(rng.integers(0, w)), int(rng.integers(0, h))),
            (int(rng.uniform(0.01, 0.03) * tpm) + 1, int(rng.uniform(0.005, 0.012) * tpm) + 1),
            0,
            0,
            360,
            tuple(float(c) * 0.5 for c in base),
            -1,
            cv2.LINE_AA,
        )
    return to_u8(dirt(rng, img, 0.15, 1.5 * tpm))


def carpet(rng, w, h, tpm, color=None) -> np.ndarray:
    color = color if color is not None else jitter_color(rng, (110, 90, 80), 0.3)
    n = noise(rng, h, w, 0.5 * tpm, 6, 0.6)
    img = colorize(color, n, 0.15) * (1 + 0.22 * grain(rng, h, w, 0.4))[..., None]
    if rng.random() < 0.6:  # woven pattern
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        p = rng.uniform(0.1, 0.3) * tpm
        pat = (np.sin(xx / p * 2 * np.pi) * np.sin(yy / p * 2 * np.pi) > 0.3).astype(np.float32)
        img *= (1 - 0.2 * pat)[..., None]
    return to_u8(dirt(rng, img, 0.2, 1.0 * tpm))


def asphalt(rng, w, h, tpm, markings: list | None = None) -> np.ndarray:
    """Road surface; ``markings`` lists ('line', v_m, width_m, dashed) / ('zebra', u0_m, u1_m, v0_m, v1_m)."""
    n = noise(rng, h, w, 1.5 * tpm, 7, 0.6)
    base = rng.uniform(70, 95)
    img = colorize((base, base, base * 1.02), n, 0.12) + 16.0 * grain(rng, h, w, 0.45)[..., None]
    for m in markings or []:
        if m[0] == "line":
            _, v_m, wd, dashed = m
            y0, y1 = int((v_m - wd / 2) * tpm), int((v_m + wd / 2) * tpm)
            if dashed:
                for x in range(0, w, int(6 * tpm)):
                    img[y0:y1, x : x + int(3 * tpm)] = (215, 212, 200)
            else:
                img[y0:y1] = (220, 200, 90) if rng.random() < 0.3 else (215, 212, 200)
        elif m[0] == "zebra":
            _, u0, u1, v0, v1 = m
            for v in np.arange(v0, v1, 1.0):
                img[int(v * tpm) : int((v + 0.5) * tpm), int(u0 * tpm) : int(u1 * tpm)] = (220, 218, 210)
    img *= (1 + 0.18 * np.tanh(noise(rng, h, w, 0.7 * tpm, 4)))[..., None]  # wear on the paint too
    for _ in range(int(w * h / (tpm * tpm) * 0.15)):  # cracks and tar patches
        pts = np.cumsum(rng.normal(0, 0.15 * tpm, (8, 2)), 0) + rng.uniform([0, 0], [w, h])
        cv2.polylines(img, [pts.astype(np.int32)], False, (30, 30, 32), max(1, int(0.01 * tpm)), cv2.LINE_AA)
    patches = np.zeros((h, w), np.float32)  # repaired patches: slightly darker, irregular
    for _ in range(int(w * h / (tpm * tpm) * 0.01)):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.ellipse(
            patches,
            c,
            (int(rng.uniform(0.3, 1.2) * tpm), int(rng.uniform(0.2, 0.8) * tpm)),
            rng.uniform(0, 180),
            0,
            360,
            1.0,
            -1,
        )
    if patches.any():
        patches = cv2.GaussianBlur(patches, (0, 0), 0.05 * tpm) * (1 + 0.5 * noise(rng, h, w, 0.2 * tpm, 3))
        img *= (1 - 0.12 * np.clip(patches, 0, 1.5))[..., None]
    return to_u8(img)


def grass(rng, w, h, tpm) -> np.ndarray:
    n = noise(rng, h, w, 0.8 * tpm, 6, 0.6)
    base = jitter_color(rng, (70, 110, 45), 0.1)
    img = colorize(base, n, 0.25) * (1 + 0.35 * grain(rng, h, w, 0.5))[..., None]
    return to_u8(img)


def leaves(rng, w, h, tpm=None) -> np.ndarray:
    """Foliage: dense light/dark blobs with strong local contrast."""
    base = jitter_color(rng, (60, 100, 40), 0.15)
    img = colorize(base, noise(rng, h, w, w / 6, 5, 0.7), 0.35)
    for _ in range(int(w * h / 60)):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        f = rng.uniform(0.5, 1.6)
        cv2.ellipse(
            img,
            c,
            (int(rng.integers(2, 6)), int(rng.integers(1, 4))),
            rng.uniform(0, 180),
            0,
            360,
            tuple(float(x) for x in base * f),
            -1,
            cv2.LINE_AA,
        )
    return to_u8(img)


def bark(rng, w, h) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    n = noise(rng, h, w, w / 4, 5, 0.6)
    ridges = np.abs(np.sin(xx / w * 2 * np.pi * 9 + 3 * n))
    img = colorize(jitter_color(rng, (95, 75, 55), 0.1), n, 0.15) * (0.6 + 0.5 * ridges)[..., None]
    return to_u8(img * (1 + 0.2 * grain(rng, h, w, 0.6))[..., None])


def metal(rng, w, h, color=(90, 95, 100)) -> np.ndarray:
    n = noise(rng, h, w, max(w, h) / 3, 5, 0.6)
    yy = np.mgrid[0:h, 0:w][0].astype(np.float32)
    img = colorize(jitter_color(rng, color, 0.1), n, 0.12) * (1 + 0.05 * np.sin(yy / 3))[..., None]
    return to_u8(img + 6 * grain(rng, h, w, 0.7)[..., None])


def cardboard(rng, w, h, tpm) -> np.ndarray:
    img = colorize(jitter_color(rng, (170, 130, 85), 0.06), noise(rng, h, w, 0.3 * tpm, 5), 0.08)
    img += 6 * grain(rng, h, w)[..., None]
    y = int(h * rng.uniform(0.3, 0.7))
    img[y : y + max(2, int(0.05 * tpm))] = (190, 170, 120)  # tape
    return to_u8(img)


def fabric(rng, w, h, color=None, pattern: str | None = None) -> np.ndarray:
    """Clothing: solid, stripes, plaid or dots, with fold shading."""
    color = (
        color
        if color is not None
        else jitter_color(
            rng,
            rng.choice(
                [
                    (40, 60, 120),
                    (150, 30, 40),
                    (30, 30, 35),
                    (200, 200, 195),
                    (60, 110, 70),
                    (190, 150, 60),
                    (110, 110, 120),
                ]
            ),
            0.2,
        )
    )
    pattern = pattern or rng.choice(["solid", "stripes", "plaid", "dots", "print"])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    img[:] = color
    other = jitter_color(rng, 255 - np.asarray(color) * 0.6, 0.2)
    if pattern == "stripes":
        p = rng.uniform(4, 14)
        img[(yy % p) < p * rng.uniform(0.3, 0.6)] = other
    elif pattern == "plaid":
        p = rng.uniform(8, 20)
        m = ((yy % p) < p * 0.3) | ((xx % p) < p * 0.3)
        img[m] = img[m] * 0.5 + other * 0.5
    elif pattern == "dots":
        p = rng.uniform(6, 12)
        img[((yy % p) - p / 2) ** 2 + ((xx % p) - p / 2) ** 2 < (p / 5) ** 2] = other
    elif pattern == "print":  # a logo / print on the front (u=0.5 is the front)
        cx, cy = w // 2, h // 3
        cv2.circle(img, (cx, cy), max(3, w // 12), tuple(float(c) for c in other), -1, cv2.LINE_AA)
        cv2.putText(
            img,
            random_word(rng, 4),
            (cx - w // 10, cy + h // 5),
            cv2.FONT_HERSHEY_SIMPLEX,
            max(0.3, w / 400),
            tuple(float(c) for c in other),
            1,
            cv2.LINE_AA,
        )
    folds = noise(rng, h, w, max(4, w / 8), 3, 0.5)
    img *= (1 + 0.15 * folds)[..., None]
    return to_u8(img + 5 * grain(rng, h, w)[..., None])


SKIN = [(235, 200, 175), (210, 160, 125), (170, 120, 85), (120, 80, 55), (90, 60, 45)]
HAIR = [(30, 25, 20), (70, 45, 25), (140, 100, 55), (200, 170, 110), (120, 120, 120), (50, 35, 30)]


def head(rng, w=128, h=64, skin=None) -> np.ndarray:
    """Equirectangular head texture (u=0.5 faces forward): skin, hair cap, eyes, mouth."""
    skin = skin if skin is not None else jitter_color(rng, SKIN[int(rng.integers(len(SKIN)))], 0.05)
    hair = jitter_color(rng, HAIR[int(rng.integers(len(HAIR)))], 0.1)
    img = colorize(skin, noise(rng, h, w, w / 8, 3), 0.04)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = np.abs(xx / w - 0.5) * 2  # 0 at the face, 1 at the back
    hairline = h * (0.35 + 0.25 * ang**2 * rng.uniform(0.8, 1.6))
    m = yy < hairline
    img[m] = hair * (1 + 0.2 * grain(rng, h, w, 0.6)[m])[:, None]
    ey = int(h * 0.45)
    for sx in (-1, 1):
        cv2.ellipse(
            img,
            (int(w * (0.5 + sx * 0.06)), ey),
            (max(1, w // 60), max(1, h // 50)),
            0,
            0,
            360,
            (40, 30, 30),
            -1,
            cv2.LINE_AA,
        )
    cv2.line(
        img, (int(w * 0.47), int(h * 0.66)), (int(w * 0.53), int(h * 0.66)), (120, 60, 60), max(1, h // 60), cv2.LINE_AA
    )
    return to_u8(img)


def sky(rng, w=1024, h=256, overcast: float | None = None) -> np.ndarray:
    """Equirectangular sky: u = azimuth fraction, v = 0 zenith .. 1 horizon."""
    overcast = rng.uniform(0, 0.8) if overcast is None else overcast
    yy = np.mgrid[0:h, 0:w][0].astype(np.float32) / h
    zen = np.array([70, 120, 200], np.float32) * (1 - overcast) + overcast * np.array([170, 175, 185], np.float32)
    hor = np.array([190, 210, 230], np.float32) * (1 - overcast) + overcast * np.array([210, 212, 215], np.float32)
    img = zen[None, None] * (1 - yy[..., None] ** 0.7) + hor[None, None] * yy[..., None] ** 0.7
    n = noise(rng, h, w, w / 10, 6, 0.55)
    cloud = np.clip((n - (0.6 - overcast)) * 1.5, 0, 1) * (1 - 0.5 * yy)
    img = (
        img * (1 - cloud[..., None])
        + np.array([245, 245, 248], np.float32)
        * cloud[..., None]
        * (0.85 + 0.15 * np.tanh(noise(rng, h, w, w / 40, 3)))[..., None]
    )
    return to_u8(img)


# ---------------------------------------------------------------------------------------------
# Text and decals

_SYL = [
    "ka",
    "lo",
    "mi",
    "ra",
    "ven",
    "to",
    "sa",
    "del",
    "bri",
    "no",
    "ex",
    "tra",
    "mo",
    "zu",
    "pe",
    "lin",
    "cor",
    "an",
    "fi",
    "que",
    "sto",
    "mar",
    "ket",
    "ho",
    "tel",
    "caf",
    "bar",
    "shop",
    "win",
    "gra",
]


def random_word(rng, syllables: int | None = None) -> str:
    n = syllables or int(rng.integers(1, 4))
    return "".join(_SYL[int(rng.integers(len(_SYL)))] for _ in range(n))


_FONTS = [
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
    cv2.FONT_HERSHEY_PLAIN,
]


def put_text_fit(img, text, box, color, rng=None, font=None, thickness=None):
    """Draw ``text`` as large as fits into box = (x, y, w, h)."""
    x, y, w, h = box
    font = (
        font
        if font is not None
        else (_FONTS[int(rng.integers(len(_FONTS)))] if rng is not None else cv2.FONT_HERSHEY_SIMPLEX)
    )
    (tw, th), _ = cv2.getTextSize(text, font, 1.0, 1)
    scale = max(0.2, min(w / max(tw, 1), h / max(th, 1)) * 0.9)
    thick = thickness or max(1, int(scale * 1.5))
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    org = (int(x + (w - tw) / 2), int(y + (h + th) / 2))
    cv2.putText(img, text, org, font, scale, tuple(float(c) for c in color), thick, cv2.LINE_AA)


def poster(rng, w: int, h: int) -> np.ndarray:
    """A busy poster: gradient, shapes, a 'photo' of colour blobs, headline and small print."""
    c1, c2 = jitter_color(rng, rng.uniform(20, 235, 3), 0.1), jitter_color(rng, rng.uniform(20, 235, 3), 0.1)
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = np.broadcast_to(c1 * (1 - yy) + c2 * yy, (h, w, 3)).copy()
    ph = int(h * rng.uniform(0.3, 0.55))
    photo = colorize(rng.uniform(40, 220, 3), noise(rng, ph, w - 2 * (w // 10), max(4, w / 5), 5, 0.7), 0.6)
    photo += 30 * np.stack([noise(rng, ph, w - 2 * (w // 10), max(3, w / 12), 3) for _ in range(3)], -1)
    img[h // 10 : h // 10 + ph, w // 10 : w - w // 10] = photo[: max(0, min(ph, h - h // 10))]
    for _ in range(int(rng.integers(2, 7))):
        col = tuple(float(c) for c in rng.uniform(0, 255, 3))
        if rng.random() < 0.5:
            cv2.circle(
                img,
                (int(rng.integers(0, w)), int(rng.integers(0, h))),
                int(rng.integers(2, max(3, w // 5))),
                col,
                -1,
                cv2.LINE_AA,
            )
        else:
            p = rng.integers(0, [w, h], (3, 2)).astype(np.int32)
            cv2.fillPoly(img, [p], col, cv2.LINE_AA)
    ink = (20, 20, 20) if img.mean() > 128 else (240, 240, 235)
    put_text_fit(img, random_word(rng).upper(), (w * 0.05, h * 0.68, w * 0.9, h * 0.14), ink, rng)
    for k in range(int(rng.integers(2, 5))):
        put_text_fit(
            img,
            " ".join(random_word(rng) for _ in range(3)),
            (w * 0.08, h * (0.84 + 0.045 * k), w * 0.84, h * 0.04),
            ink,
            font=cv2.FONT_HERSHEY_PLAIN,
            thickness=1,
        )
    return to_u8(img)


def painting(rng, w: int, h: int) -> np.ndarray:
    """A framed picture: colourful noise landscape in a wooden or metal frame."""
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        img[..., c] = 128 + 90 * noise(rng, h, w, max(4, w / 3), 6, 0.65)
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    img[..., 2] += 60 * (1 - yy)
    f = max(2, w // 14)
    frame = jitter_color(rng, rng.choice([(120, 80, 40), (200, 180, 120), (40, 40, 40), (230, 230, 230)]), 0.1)
    img[:f], img[-f:], img[:, :f], img[:, -f:] = frame, frame, frame, frame
    return to_u8(img)


def graffiti(rng, img: np.ndarray, tpm: float, count: int) -> None:
    """Spray-paint tags and curves drawn in place."""
    h, w = img.shape[:2]
    for _ in range(count):
        col = tuple(
            float(c)
            for c in rng.choice(
                [
                    (230, 40, 60),
                    (40, 200, 90),
                    (40, 90, 230),
                    (250, 210, 30),
                    (240, 240, 240),
                    (20, 20, 20),
                    (200, 60, 220),
                ]
            )
        )
        x, y = int(rng.integers(0, w)), int(rng.integers(int(h * 0.5), h))
        size = rng.uniform(0.4, 1.2) * tpm
        for _ in range(int(rng.integers(1, 4))):
            pts = (np.cumsum(rng.normal(0, size / 4, (6, 2)), 0) + (x, y)).astype(np.int32)
            cv2.polylines(img, [pts], False, col, max(1, int(0.03 * tpm)), cv2.LINE_AA)
        put_text_fit(
            img,
            random_word(rng, 2),
            (x, y - size / 2, size * 2, size / 2),
            col,
            font=cv2.FONT_HERSHEY_SCRIPT_COMPLEX,
            thickness=max(1, int(0.02 * tpm)),
        )


def paste(dst: np.ndarray, src: np.ndarray, x: int, y: int) -> None:
    """Paste src into dst at (x, y), clipped."""
    h, w = src.shape[:2]
    H, W = dst.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
    if x1 > x0 and y1 > y0:
        dst[y0:y1, x0:x1] = src[y0 - y : y1 - y, x0 - x : x1 - x]


def books(rng, w: int, h: int, tpm: float, shelves: int) -> np.ndarray:
    """Front of a bookshelf: shelf boards with rows of book spines carrying titles."""
    img = np.empty((h, w, 3), np.float32)
    img[:] = jitter_color(rng, (60, 45, 35), 0.2)
    row_h = h / shelves
    board = max(2, int(0.025 * tpm))
    for r in range(shelves):
        y0, y1 = int(r * row_h) + board, int((r + 1) * row_h)
        x = int(rng.integers(0, max(1, int(0.05 * tpm))))
        while x < w - 4:
            bw = int(rng.uniform(0.02, 0.06) * tpm) + 2
            bh = int((y1 - y0) * rng.uniform(0.6, 0.95))
            if rng.random() < 0.08:
                x += bw * 2
                continue
            col = jitter_color(rng, rng.uniform(30, 230, 3), 0.1)
            img[y1 - bh : y1, x : x + bw] = col
            if bw > 6 and bh > 20:
                sub = img[y1 - bh : y1, x : x + bw]
                rot = np.ascontiguousarray(np.rot90(sub))
                put_text_fit(
                    rot,
                    random_word(rng, 2).upper(),
                    (2, 1, rot.shape[1] - 4, rot.shape[0] - 2),
                    (235, 230, 210) if col.mean() < 120 else (25, 25, 25),
                    font=cv2.FONT_HERSHEY_PLAIN,
                    thickness=1,
                )
                img[y1 - bh : y1, x : x + bw] = np.rot90(rot, -1)
            x += bw + int(rng.integers(0, 2))
        img[int(r * row_h) : int(r * row_h) + board] = jitter_color(rng, (110, 80, 55), 0.1)
    img *= (1 + 0.06 * grain(rng, h, w))[..., None]
    return to_u8(img)
