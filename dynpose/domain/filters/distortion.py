"""Distortion filter (DynPose-100K appendix A.2, filter 2): fisheye and other strong lens distortion.

The paper runs DroidCalib on 6 fps frames and rejects a video whose unified camera model (UCM,
Mei) parameter exceeds 1.0. No learned calibrator ships here, so the same parameter is estimated
from the images with the plumb-line principle: straight 3D lines must come out straight once the
lens is undone. Under the UCM a pixel ``m = (x - c) / f`` unprojects to the unit ray

    ray = (fac * mx, fac * my, fac - xi),   fac = (xi + sqrt(1 + (1 - xi^2) |m|^2)) / (|m|^2 + 1),

and the rays of a straight 3D line lie on one plane through the camera centre (a great circle),
whatever the field of view -- so no pole at 90 degrees, unlike a division model on the image plane.

1. Edge chains: Canny edges of a few frames (``n_frames``, evenly spread, long side at most
   ``work_max_side``), traced as contours and cut where their direction turns by more than
   ``turn_deg`` (corners of windows, ends of a traced edge); pieces of at least ``min_piece_px``
   are kept, minus those along a black image border (the image circle of a fisheye, letterbox bars).
   Each point is moved to the sub-pixel gradient peak across the edge.
2. Sweep: for each ``xi`` of a grid and each central focal ``f_c = f / (1 + xi)`` of a grid (the
   focal a pinhole camera would have at the image centre), every piece's rays get their best plane
   through the origin (the smallest eigenvector of their scatter matrix); its residual is the rms
   pixel distance between each point and the image of that plane (the nearest ray on the plane,
   projected back with the same model), capped at ``cap_px`` (pieces that are not lines -- people,
   round things -- cost the same everywhere). The cost of a model is the mean over pieces weighted
   by chord length ^ ``length_power``. For ``xi = 0`` (pinhole) lines are
   straight in the image whatever the focal; the residual (measured through the rays) is least
   biased at a long focal, so the pinhole's cost is its best over the focal grid.
3. The estimate is the smallest ``xi`` whose cost is within ``tolerance`` of the best: near the image
   centre only ``xi (1 + xi) / f^2`` shows (a ridge in the grid), and a rule on ``xi`` must not fire
   on a ridge.

4. Image circle (``image_circle``): a circular fisheye image has a hard black border centred on the
   frame at one radius (the renderer of the synthetic variant, like most circular fisheye lenses,
   images up to 90 degrees off-axis there). A pinhole camera cannot make one.

Rule (paper): ``xi > max_xi`` (1.0) -> 0. The sweep estimates the very parameter the paper
thresholds, but on 480 px frames of the synthetic fisheye variant the line evidence is weak (few
long off-centre lines; most clips read xi 0-0.75, see the report), so the rule has a second witness:
the image circle (``circle_fraction`` of the directions from the centre end in one black circle).
The score is the smaller of the two smoothed tests (one rule, "the lens is perspective", failed
if either witness says fisheye), so ``mean_score`` of that single component. A scene with neither
straight edges nor a circle: score None, status ``too_few_lines``.

Limits: the principal point is taken at the image centre; pure radial models only (no tangential
distortion); straight edges must exist; a curved edge that is long and smooth (an arch, a
horizon line of a curved coast) pulls towards distortion; the grid stops at ``xi`` = 2.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import pyarrow as pa

from dynpose.domain.filters.base import FilterFrames, FilterResult, mean_score, sigmoid_pass
from dynpose.domain.status import Status

NAME = "filter_distortion"


def _default_xis() -> tuple[float, ...]:
    return tuple(np.round(np.arange(0.0, 2.51, 0.25), 2).tolist())


def _default_focals() -> tuple[float, ...]:
    return tuple(np.round(np.geomspace(0.35, 3.0, 10), 4).tolist())


@dataclass
class DistortionConfig:
    fps: float = 6.0  # paper: the distortion filter runs at 6 fps (frames are thinned to it if decoded faster)
    n_frames: int = 3  # frames used, evenly spread over the clip (the lens does not change; edges do)
    work_max_side: int = 480  # edges are found at this long side at most (pixels)
    canny_low: int = 40  # Canny hysteresis thresholds (on a 3x3 blurred grey image)
    canny_high: int = 120
    min_piece_px: int = 30  # edge pieces shorter than this (chord, work pixels) are dropped
    turn_deg: float = 30.0  # an edge is cut where its direction turns by more than this over tangent_step
    tangent_step: int = 4  # contour points either side used for the local direction
    dark_level: int = 10  # grey level below which a pixel is "black border" (fisheye circle, letterbox)
    point_step: int = 2  # every point_step-th contour point enters the fit (more when there are over max_points)
    max_points: int = 6000  # at most about this many edge points enter the fit (cost)
    xis: tuple[float, ...] = field(default_factory=_default_xis)  # UCM xi grid (0 = pinhole)
    focals_h: tuple[float, ...] = field(default_factory=_default_focals)  # central focal grid, x half-height
    length_power: float = 0.5  # a piece weighs (chord length)^this: long edges count more, no single one decides
    cap_px: float = 2.0  # a piece's residual is capped at this (pixels): non-lines cost the same for every model
    tolerance: float = 0.03  # models within this relative cost of the best count as equally good (smallest xi wins)
    min_pieces: int = 8  # fewer edge pieces: no estimate (too_few_lines)
    max_xi: float = 1.0  # paper: UCM alpha above 1.0 -> 0
    xi_width: float = 0.2  # sigmoid width of the rule (xi units): about one grid step (no seed-0 clip read near 1)
    circle_rays: int = 72  # directions searched for a circular image border
    circle_dark: int = 24  # grey level below which the (median-filtered) border counts as black
    circle_tolerance: float = 0.04  # border radii within this fraction of the median count as one circle
    # more than this fraction of the directions end at the circle -> a circular fisheye image
    circle_fraction: float = 0.4
    # sigmoid width of the image-circle rule (fraction of directions); seed 0: fisheye 1.0, all others 0.0
    circle_width: float = 0.08
    min_side: int = 32  # frames with a shorter side (pixels) are too small


COLUMNS: list[tuple[str, pa.DataType]] = [
    ("distortion_frames", pa.int64()),  # frames searched for edges
    ("distortion_lines", pa.int64()),  # edge pieces (candidate lines) in the fit
    ("distortion_points", pa.int64()),  # edge points in the fit
    ("distortion_xi", pa.float64()),  # estimated UCM parameter xi (the paper's alpha); 0 = pinhole
    # estimated central focal f / (1 + xi), 720p pixels (NaN when xi = 0: not determined)
    ("distortion_focal_px", pa.float64()),
    ("distortion_residual_px", pa.float64()),  # weighted mean capped line residual of the chosen model (pixels)
    ("distortion_pinhole_residual_px", pa.float64()),  # the same for a pinhole camera (xi = 0)
    ("distortion_gain", pa.float64()),  # pinhole residual / chosen residual (1 = the lens changes nothing)
    # fraction of directions from the centre ending in a black border at one radius
    ("distortion_circle_fraction", pa.float64()),
    ("distortion_circle_radius", pa.float64()),  # that radius, fraction of the half-diagonal (NaN: no border)
    ("distortion_xi_score", pa.float64()),  # smoothed "xi < max_xi" (1 = not distorted)
    # smoothed "circle_fraction < circle_fraction" (1 = no fisheye image circle)
    ("distortion_circle_score", pa.float64()),
]


def _grey(frame: np.ndarray, max_side: int) -> np.ndarray:
    g = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame
    h, w = g.shape
    s = min(1.0, max_side / max(h, w)) if max_side else 1.0
    if s < 1.0:
        g = cv2.resize(g, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(g, np.uint8)


def edge_pieces(gray: np.ndarray, cfg: DistortionConfig) -> list[np.ndarray]:
    """Smooth edge pieces (float (n, 2) pixel arrays) of one grey frame: Canny contours cut at sharp turns."""
    blur = cv2.GaussianBlur(gray, (3, 3), 0)
    edges = cv2.Canny(blur, cfg.canny_low, cfg.canny_high)
    contours, _ = cv2.findContours(edges, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    b = blur.astype(np.float32)
    gx, gy = cv2.Sobel(b, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(b, cv2.CV_32F, 0, 1, ksize=3)
    mag = cv2.magnitude(gx, gy)
    h, w = gray.shape
    dark = cv2.dilate((gray < cfg.dark_level).astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    k = max(1, cfg.tangent_step)
    cos_turn = math.cos(math.radians(cfg.turn_deg))
    out = []
    for c in contours:
        c = c.reshape(-1, 2)
        if len(c) < cfg.min_piece_px:
            continue
        n = len(c)
        i = np.arange(n)
        fwd = c[np.minimum(i + k, n - 1)] - c[i]
        bwd = c[i] - c[np.maximum(i - k, 0)]
        nf, nb = np.linalg.norm(fwd, axis=1), np.linalg.norm(bwd, axis=1)
        cosang = (fwd * bwd).sum(1) / np.maximum(nf * nb, 1e-9)
        bad = (cosang < cos_turn) & (nf > 0) & (nb > 0)
        bad |= dark[c[:, 1], c[:, 0]] | (c[:, 0] < 2) | (c[:, 1] < 2) | (c[:, 0] > w - 3) | (c[:, 1] > h - 3)
        # runs of good points between breaks
        cut = np.flatnonzero(np.diff(np.r_[1, bad.astype(np.int8), 1]))
        for s, e in zip(cut[::2], cut[1::2]):
            if e - s < cfg.min_piece_px:
                continue
            seg = c[s:e]
            if np.linalg.norm(seg[-1] - seg[0]) >= cfg.min_piece_px:
                out.append(seg.astype(np.float64))
    return [_subpixel(p, gx, gy, mag) for p in out]


def _subpixel(p: np.ndarray, gx: np.ndarray, gy: np.ndarray, mag: np.ndarray) -> np.ndarray:
    """Edge pixels moved to the gradient-magnitude peak across the edge (parabola through 3 samples):
    integer contour positions alone carry a +-0.5 px staircase that hides a lens's curvature."""
    xi, yi = p[:, 0].astype(int), p[:, 1].astype(int)
    g = np.stack([gx[yi, xi], gy[yi, xi]], 1).astype(np.float64)
    n = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-9)

    def at(q):
        return (
            cv2.remap(
                mag,
                q[:, 0].astype(np.float32).reshape(-1, 1),
                q[:, 1].astype(np.float32).reshape(-1, 1),
                cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )
            .ravel()
            .astype(np.float64)
        )

    m0, mm, mp = at(p), at(p - n), at(p + n)
    den = mm - 2 * m0 + mp
    off = np.where(den < -1e-6, 0.5 * (mm - mp) / np.where(den < -1e-6, den, -1.0), 0.0)
    return p + np.clip(off, -0.5, 0.5)[:, None] * n


def ucm_rays(m: np.ndarray, xi: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit rays (N, 3) of normalised UCM image points m (N, 2), and which of them are inside the image circle."""
    r2 = (m**2).sum(1)
    disc = 1.0 + (1.0 - xi * xi) * r2
    ok = disc >= 0
    fac = (xi + np.sqrt(np.maximum(disc, 0.0))) / (r2 + 1.0)
    return np.c_[fac[:, None] * m, fac - xi], ok


@dataclass
class DistortionSweep:
    xis: np.ndarray  # (X,)
    focals: np.ndarray  # (F,) central focal, work pixels
    costs: np.ndarray  # (X, F) weighted mean capped residual (pixels)
    xi: float
    focal: float  # central focal of the chosen model, work pixels (NaN for xi = 0)
    residual: float
    pinhole_residual: float
    lines: int
    points: int


def sweep(pieces: list[np.ndarray], width: int, height: int, cfg: DistortionConfig) -> DistortionSweep:
    """The (xi, central focal) sweep over the edge pieces of frames of ``width`` x ``height`` work pixels."""
    c = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    total = sum(len(p) for p in pieces)
    step = max(1, cfg.point_step, int(math.ceil(total / cfg.max_points)))
    pts = [p[::step] for p in pieces]
    lens = np.array([len(p) for p in pts])
    P = np.concatenate(pts) - c
    starts = np.r_[0, np.cumsum(lens)[:-1]]
    pid = np.repeat(np.arange(len(pts)), lens)
    weight = np.array([np.linalg.norm(p[-1] - p[0]) for p in pieces]) ** cfg.length_power
    xis = np.asarray(cfg.xis, np.float64)
    fcs = np.asarray(cfg.focals_h, np.float64) * height / 2.0
    costs = np.full((len(xis), len(fcs)), np.inf)
    iu = np.triu_indices(3)
    for a, xi in enumerate(xis):
        for b, fc in enumerate(fcs):
            # a pinhole: straightness does not depend on f; the ray residual is least biased at long f
            if xi == 0 and b < len(fcs) - 3:
                continue
            f = fc * (1.0 + xi)
            ray, ok = ucm_rays(P / f, xi)
            prod = ray[:, iu[0]] * ray[:, iu[1]]  # the 6 distinct entries of ray ray^T
            sums = np.add.reduceat(prod, starts, axis=0)
            M = np.empty((len(sums), 3, 3))
            M[:, iu[0], iu[1]] = sums
            M[:, iu[1], iu[0]] = sums
            _, vec = np.linalg.eigh(M)
            nrm = vec[:, :, 0][pid]  # each point's piece plane normal
            on = ray - (ray * nrm).sum(1, keepdims=True) * nrm  # the nearest ray on the plane (great circle)
            on /= np.maximum(np.linalg.norm(on, axis=1, keepdims=True), 1e-12)
            zc = on[:, 2] + xi
            ok &= zc > 1e-6
            # projected back to pixels (relative to the centre)
            back = f * on[:, :2] / np.where(zc > 1e-6, zc, 1.0)[:, None]
            d2 = ((back - P) ** 2).sum(1)  # squared pixel distance of each point from its piece's line image
            res = np.sqrt(np.add.reduceat(d2, starts) / lens)
            res = np.where(np.logical_and.reduceat(ok, starts), np.minimum(res, cfg.cap_px), cfg.cap_px)
            costs[a, b] = float((res * weight).sum() / weight.sum())
    best = float(costs.min())
    within = np.argwhere(costs <= best * (1.0 + cfg.tolerance))
    a, b = min(within.tolist(), key=lambda ab: (xis[ab[0]], costs[ab[0], ab[1]]))
    xi = float(xis[a])
    # a pinhole's lines are straight whatever f: its best f
    pinhole = float(costs[0].min()) if xis[0] == 0 else float("nan")
    costs[0] = np.where(np.isfinite(costs[0]), costs[0], pinhole)
    return DistortionSweep(
        xis,
        fcs,
        costs,
        xi,
        float(fcs[b]) if xi > 0 else float("nan"),
        float(costs[a, b]),
        pinhole,
        len(pieces),
        int(len(P)),
    )


@dataclass
class ImageCircle:
    fraction: float  # fraction of directions from the centre whose ray ends in a black border at the common radius
    radius: float  # median border radius over those directions, as a fraction of the half-diagonal (NaN: none)
    inside_level: float  # mean grey level just inside the border


def image_circle(gray: np.ndarray, cfg: DistortionConfig) -> ImageCircle:
    """Look for a circular fisheye image: a black border centred on the frame, at one radius all round.

    Rays are cast from the centre in ``circle_rays`` directions; a ray "ends in black" when, from
    some radius on, every pixel to the frame edge is darker than ``dark_level``. The fraction counts
    the directions whose end radius lies within ``circle_tolerance`` of the median end radius;
    directions along which the frame reaches past that radius but do not end there count against a
    circle (those that leave the frame first say nothing). Letterbox bars end rays at radii that vary
    with the direction, so they do not make a circle."""
    h, w = gray.shape
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    ang = np.linspace(0, 2 * np.pi, cfg.circle_rays, endpoint=False)
    rmax = math.hypot(cx, cy)
    rs = np.arange(0, rmax, 1.0)
    xs = cx + np.cos(ang)[:, None] * rs[None]
    ys = cy + np.sin(ang)[:, None] * rs[None]
    inside = (xs >= 0) & (xs <= w - 1) & (ys >= 0) & (ys <= h - 1)
    smooth = cv2.medianBlur(gray, 5)  # compression noise in the black border
    iy, ix = np.clip(ys.round().astype(int), 0, h - 1), np.clip(xs.round().astype(int), 0, w - 1)
    vals = smooth[iy, ix].astype(np.float32)
    dark = (vals < cfg.circle_dark) | ~inside
    # from the end: the dark run that reaches the frame edge; its start is the border radius
    tail = np.flip(np.cumprod(np.flip(dark, 1), 1), 1).astype(bool)  # dark from here to the end of the ray
    last_in = inside.sum(1) - 1
    has = tail[np.arange(len(ang)), np.maximum(last_in, 0)] & (last_in > 0)
    start = np.where(has, np.argmax(tail, 1), -1)
    ok = has & (start > 0.2 * rmax)  # a border, and not a black frame
    if ok.sum() < 3:
        return ImageCircle(0.0, float("nan"), float("nan"))
    r_med = float(np.median(start[ok]))
    close = ok & (np.abs(start - r_med) <= cfg.circle_tolerance * r_med)
    k = np.flatnonzero(close)
    lvl = float(vals[k, np.maximum(start[k] - 4, 0)].mean()) if len(k) else float("nan")
    if not lvl > 2 * cfg.circle_dark:  # a fade into darkness (vignetting), not a hard border
        return ImageCircle(0.0, r_med / rmax, lvl)
    # only directions along which the frame reaches past the circle can show it
    reach = last_in >= r_med * (1 + cfg.circle_tolerance)
    return ImageCircle(float(close[reach].mean()) if reach.any() else 0.0, r_med / rmax, lvl)


def _nan_columns() -> dict:
    ints = {"distortion_frames", "distortion_lines", "distortion_points"}
    return {name: (0 if name in ints else float("nan")) for name, _ in COLUMNS}


def run(frames: FilterFrames, cfg: DistortionConfig | None = None, video: dict | None = None) -> FilterResult:
    cfg = cfg or DistortionConfig()
    cols = _nan_columns()
    if frames.fps and frames.fps > cfg.fps * 1.25:
        frames = frames.at_fps(cfg.fps)
    n = len(frames)
    if n < 1:
        return FilterResult(None, Status.too_few_frames, "no frame", cols)
    if min(frames.width, frames.height) < cfg.min_side:
        return FilterResult(
            None,
            "frames_too_small",
            f"{frames.width}x{frames.height} frames; lines need a side >= {cfg.min_side}",
            cols,
        )
    picks = np.unique(np.linspace(0, n - 1, min(cfg.n_frames, n)).round().astype(int))
    greys = [_grey(frames.frames[i], cfg.work_max_side) for i in picks]
    size = greys[0].shape
    cols["distortion_frames"] = len(picks)
    circ = image_circle(np.mean(greys, axis=0).astype(np.uint8), cfg)
    cols.update(distortion_circle_fraction=circ.fraction, distortion_circle_radius=circ.radius)
    cols["distortion_circle_score"] = sigmoid_pass(
        circ.fraction, cfg.circle_fraction, cfg.circle_width, good_above=False
    )
    pieces = [p for g in greys for p in edge_pieces(g, cfg)]
    cols["distortion_lines"] = len(pieces)
    if len(pieces) >= cfg.min_pieces:
        sw = sweep(pieces, size[1], size[0], cfg)
        to720 = 720.0 / min(size)
        cols.update(
            distortion_points=sw.points,
            distortion_xi=sw.xi,
            distortion_focal_px=sw.focal * to720,
            distortion_residual_px=sw.residual,
            distortion_pinhole_residual_px=sw.pinhole_residual,
            distortion_gain=sw.pinhole_residual / sw.residual if sw.residual > 0 else float("nan"),
        )
        cols["distortion_xi_score"] = sigmoid_pass(sw.xi, cfg.max_xi, cfg.xi_width, good_above=False)
    # One rule, as in the paper ("the lens is not strongly non-perspective"), with two witnesses: a
    # video fails it if either the lines or the image circle say fisheye (the smaller smoothed value).
    parts = [p for p in (cols["distortion_xi_score"], cols["distortion_circle_score"]) if math.isfinite(p)]
    score = mean_score([min(parts)]) if parts else None
    if len(pieces) < cfg.min_pieces and not circ.fraction > 0:
        return FilterResult(
            None,
            "too_few_lines",
            f"{len(pieces)} edge piece(s) in {len(picks)} frame(s) and no image circle; "
            f"the line fit needs {cfg.min_pieces}",
            cols,
        )
    msg = (
        f"xi {cols['distortion_xi']:.2f} from {len(pieces)} edge pieces,"
        f" image circle on {circ.fraction:.0%} of directions"
    )
    return FilterResult(score, Status.ok, msg, cols)
