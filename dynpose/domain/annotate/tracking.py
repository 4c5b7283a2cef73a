"""Sliding-window grid point tracking (DynPose-100K appendix A.3, "Point tracking").

A grid of ``grid x grid`` points is queried every ``stride`` frames and tracked forward for
``length`` frames. The paper uses BootsTAP; the CPU default here is pyramidal Lucas-Kanade chained
frame to frame with a forward-backward consistency check. All windows alive at a frame are tracked
in one LK call, so the cost is two LK calls per frame pair whatever the number of windows. Windows
near the end of the video are simply shorter: LK cost does not depend on a fixed sequence length,
so the paper's padding (a BootsTAP speed trick) is not needed.

Back ends: ``"lk"`` (default), ``"dis"`` (dense DIS flow chained frame to frame, same checks) and
``"learned"`` (a small torch correlation tracker that needs a checkpoint, see ``LearnedTracker``).
Query points are snapped to the best corner of their grid cell (``snapped_grid``), and a cell
where a point of the previous window is still tracked continues that point instead
(``continue_tracks``): the new window records which point it continues, so tracks can be linked
across windows into tracks as long as the point stays visible. A 30-frame track holds too little
parallax for a slow forward dolly; a linked one spans the clip.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np
from scipy.ndimage import map_coordinates


@dataclass
class TrackConfig:
    grid: int = 42  # grid x grid query points per window (paper: 42 x 42)
    stride: int = 5  # a new window every `stride` frames (paper: 5 at 12 fps)
    length: int = 30  # frames per window, query frame included (paper: 30)
    work_max_side: int | None = 854  # track at this long side; coordinates come back at input size
    fb_threshold: float = 1.0  # forward-backward error (work pixels) above which a point is lost
    border: float = 2.0  # points closer than this to the image edge (work pixels) are lost
    backend: str = "lk"  # "lk" | "dis" | "learned"
    win_size: int = 21  # LK window
    levels: int = 3  # LK pyramid levels
    min_eig: float = 1e-3  # LK minimum eigenvalue: untextured points are dropped at once
    iters: int = 20  # LK iterations per pyramid level
    query: str = "start"  # query frame of a window: "start" (tracked forward) or "middle" (forward and backward)
    snap: bool = True  # move each grid query to the most trackable pixel of its cell (LK needs corners)
    min_corner: float = 0.02  # cells whose best corner score is below this x the frame's 95th percentile are dropped
    continue_tracks: bool = True  # a new window continues the previous window's live points (query="start" only)
    # Restart at breaks (query="start" only): where fewer than restart_survival of the live points survive
    # a frame step (a dropped stretch of frames, a whip pan), a new window starts right after the break
    # instead of at the next stride, so the frames after it are tracked at all.
    restart: bool = True
    restart_survival: float = 0.3
    checkpoint: str | None = None  # learned back end only


@dataclass
class TrackWindow:
    query_frame: int
    frame_indices: np.ndarray  # (T,) consecutive indices into the sampled frames, query frame among them
    points: np.ndarray  # (T, P, 2) float32 pixel coordinates at input resolution
    visible: np.ndarray  # (T, P) bool; once lost (going away from the query frame) a point stays lost
    continues: np.ndarray | None = None  # (P,) int: the previous window's point this query point continues, -1 none

    def __post_init__(self):
        if self.continues is None:
            self.continues = np.full(self.points.shape[1], -1, np.int64)

    @property
    def query_offset(self) -> int:
        """Row of ``points`` / ``visible`` that holds the query points."""
        return int(self.query_frame - self.frame_indices[0])


@dataclass
class Tracklets:
    windows: list[TrackWindow]
    num_frames: int
    width: int
    height: int
    timings: dict = field(default_factory=dict)
    gamma: list[np.ndarray] | None = None  # motion level (px) of each window's points (motion_level.py), if fitted

    @property
    def num_observations(self) -> int:
        return int(sum(w.visible.sum() for w in self.windows))

    def survival(self) -> np.ndarray:
        """Fraction of each window's query points still visible at each offset (windows x length)."""
        length = max((len(w.frame_indices) for w in self.windows), default=0)
        out = np.full((len(self.windows), length), np.nan)
        for i, w in enumerate(self.windows):
            out[i, : len(w.frame_indices)] = w.visible.mean(axis=1)
        return out


class StepTracker(Protocol):
    """Moves points from frame ``src`` to frame ``dst`` (adjacent); returns new points and a per-point ok flag."""

    def step(self, src: int, dst: int, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def grid_points(width: int, height: int, n: int) -> np.ndarray:
    """An n x n grid of cell centres covering the image, (n*n, 2) float32."""
    xs = (np.arange(n) + 0.5) * width / n
    ys = (np.arange(n) + 0.5) * height / n
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)


def snapped_grid(gray: np.ndarray, n: int, min_corner: float) -> tuple[np.ndarray, np.ndarray]:
    """Per grid cell, the pixel with the largest Shi-Tomasi score; returns (n*n, 2) points and a keep flag.

    A grid keeps the paper's even coverage; snapping inside the cell puts LK on a corner, which
    localises to a fraction of a pixel where a blank wall does not.
    """
    h, w = gray.shape
    score = cv2.cornerMinEigenVal(gray, 5, 3)
    m = 4  # corners at the very edge would be lost at the first step
    score[:m], score[-m:], score[:, :m], score[:, -m:] = 0, 0, 0, 0
    ys = np.linspace(0, h, n + 1).astype(int)
    xs = np.linspace(0, w, n + 1).astype(int)
    ch, cw = int(np.diff(ys).max()), int(np.diff(xs).max())
    # Gather every cell into a (n, n, ch, cw) block (cells may differ by a pixel: pad with -1).
    rows = np.clip(ys[:-1, None] + np.arange(ch)[None], 0, h - 1)
    cols = np.clip(xs[:-1, None] + np.arange(cw)[None], 0, w - 1)
    block = score[rows[:, None, :, None], cols[None, :, None, :]]
    block = np.where(
        (np.arange(ch)[None, None, :, None] < np.diff(ys)[:, None, None, None])
        & (np.arange(cw)[None, None, None, :] < np.diff(xs)[None, :, None, None]),
        block,
        -1.0,
    )
    flat = block.reshape(n, n, -1)
    best = flat.argmax(axis=2)
    by, bx = np.divmod(best, cw)
    pts = (
        np.stack([cols[np.arange(n)[None, :], bx], rows[np.arange(n)[:, None], by]], -1)
        .reshape(-1, 2)
        .astype(np.float32)
    )
    keep = flat.max(axis=2).ravel() >= min_corner * max(float(np.percentile(score, 95)), 1e-12)
    return pts, keep


def _cell_index(pts: np.ndarray, width: int, height: int, n: int) -> np.ndarray:
    """Grid cell (row-major, as in :func:`snapped_grid`) of each point."""
    ys = np.linspace(0, height, n + 1).astype(int)
    xs = np.linspace(0, width, n + 1).astype(int)
    row = np.clip(np.searchsorted(ys, pts[:, 1], side="right") - 1, 0, n - 1)
    col = np.clip(np.searchsorted(xs, pts[:, 0], side="right") - 1, 0, n - 1)
    return row * n + col


def continued_queries(
    query: np.ndarray, keep: np.ndarray, prev: np.ndarray, prev_alive: np.ndarray, size: tuple[int, int], n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A window's grid queries where each cell holding live points of the previous window continues one of them.

    In such a cell the live point nearest the cell's own query replaces it, so the new window's
    track starts exactly where the old one is; returns (query, keep, continues), ``continues``
    the previous window's point index per query, -1 for a fresh query.
    """
    query, keep = query.copy(), keep.copy()
    continues = np.full(len(query), -1, np.int64)
    live = np.flatnonzero(prev_alive)
    if len(live):
        cells = _cell_index(prev[live], size[0], size[1], n)
        dist = np.linalg.norm(prev[live] - query[cells], axis=1)
        order = np.lexsort((dist, cells))
        _, first = np.unique(cells[order], return_index=True)
        chosen = live[order[first]]
        cells = cells[order[first]]
        query[cells], keep[cells], continues[cells] = prev[chosen], True, chosen
    return query, keep, continues


def _to_gray(frames: np.ndarray, max_side: int | None) -> tuple[list[np.ndarray], float]:
    h, w = frames.shape[1:3]
    scale = 1.0 if not max_side or max(h, w) <= max_side else max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    out = []
    for f in frames:
        g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) if f.ndim == 3 else f
        out.append(g if scale == 1.0 else cv2.resize(g, size, interpolation=cv2.INTER_AREA))
    return out, scale


class LKTracker:
    def __init__(self, grays: list[np.ndarray], cfg: TrackConfig):
        self.grays, self.cfg = grays, cfg
        self.params = dict(
            winSize=(cfg.win_size, cfg.win_size),
            maxLevel=cfg.levels,
            criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, cfg.iters, 0.01),
            minEigThreshold=cfg.min_eig,
        )

    def step(self, src: int, dst: int, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # (OpenCV's Python binding cannot take prebuilt pyramids, so each call builds its own.)
        a, b = self.grays[src], self.grays[dst]
        p0 = pts.reshape(-1, 1, 2).astype(np.float32)
        p1, st1, _ = cv2.calcOpticalFlowPyrLK(a, b, p0, None, **self.params)
        p0r, st2, _ = cv2.calcOpticalFlowPyrLK(b, a, p1, None, **self.params)
        fb = np.linalg.norm((p0r - p0).reshape(-1, 2), axis=1)
        ok = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb < self.cfg.fb_threshold)
        return p1.reshape(-1, 2), ok


class DISTracker:
    """Chains dense DIS flow; the backward flow gives the forward-backward check."""

    def __init__(self, grays: list[np.ndarray], cfg: TrackConfig):
        self.grays, self.cfg = grays, cfg

    @staticmethod
    def _sample(flow: np.ndarray, pts: np.ndarray) -> np.ndarray:
        coords = [pts[:, 1], pts[:, 0]]  # bilinear, edge values repeated
        return np.stack([map_coordinates(flow[..., c], coords, order=1, mode="nearest") for c in (0, 1)], 1)

    def step(self, src: int, dst: int, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from dynpose.domain.annotate.flow import dis_flow

        fwd = dis_flow(self.grays[src], self.grays[dst])
        bwd = dis_flow(self.grays[dst], self.grays[src])
        p1 = pts + self._sample(fwd, pts)
        back = p1 + self._sample(bwd, p1)
        ok = np.linalg.norm(back - pts, axis=1) < self.cfg.fb_threshold
        return p1.astype(np.float32), ok


def correlation_tracker_net(channels: int = 16):
    """The learned back end's network: a small conv feature extractor (torch, built on demand)."""
    import torch.nn as nn

    return nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1))


class LearnedTracker:
    """Learned step tracker: conv features, local correlation, soft-argmax displacement.

    A minimal interface for learned point trackers (BootsTAP, CoTracker, ... would plug in
    here): it loads ``cfg.checkpoint`` (a ``state_dict`` of :func:`correlation_tracker_net`) and
    fails clearly when the file is missing. No trained weights ship with dynpose; the tests run it
    with random weights for plumbing only, so its accuracy is not measured.
    """

    radius = 6  # search window half-size in work pixels

    def __init__(self, grays: list[np.ndarray], cfg: TrackConfig):
        import os

        import torch

        if not cfg.checkpoint or not os.path.isfile(cfg.checkpoint):
            raise FileNotFoundError(
                f"tracking backend 'learned' needs TrackConfig.checkpoint, a state_dict file; {cfg.checkpoint!r} "
                "does not exist"
            )
        self.torch, self.grays, self.cfg = torch, grays, cfg
        self.net = correlation_tracker_net()
        self.net.load_state_dict(torch.load(cfg.checkpoint, map_location="cpu", weights_only=True))
        self.net.eval()
        self._feat: dict[int, object] = {}

    def _features(self, t: int):
        if t not in self._feat:
            self._feat = {k: v for k, v in self._feat.items() if abs(k - t) <= 1}
            img = self.torch.from_numpy(self.grays[t]).float()[None, None] / 255.0
            with self.torch.no_grad():
                self._feat[t] = self.torch.nn.functional.normalize(self.net(img), dim=1)
        return self._feat[t]

    def _move(self, fa, fb, pts: np.ndarray) -> np.ndarray:
        torch, F = self.torch, self.torch.nn.functional
        h, w = fa.shape[-2:]
        r = self.radius
        offs = torch.stack(
            torch.meshgrid(torch.arange(-r, r + 1.0), torch.arange(-r, r + 1.0), indexing="xy"), -1
        ).reshape(-1, 2)
        p = torch.from_numpy(pts).float()

        def norm(q):
            return torch.stack([q[..., 0] / (w - 1), q[..., 1] / (h - 1)], -1) * 2 - 1

        with torch.no_grad():
            query = F.grid_sample(fa, norm(p)[None, :, None], align_corners=True)[0, :, :, 0]  # (C, P)
            cand = p[:, None] + offs[None]  # (P, K, 2)
            feats = F.grid_sample(fb, norm(cand)[None], align_corners=True)[0]  # (C, P, K)
            weights = torch.softmax((feats * query[:, :, None]).sum(0) * 20.0, dim=1)  # (P, K)
            return (weights[..., None] * cand).sum(1).numpy()

    def step(self, src: int, dst: int, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fa, fb = self._features(src), self._features(dst)
        new = self._move(fa, fb, pts)
        back = self._move(fb, fa, new)
        return new.astype(np.float32), np.linalg.norm(back - pts, axis=1) < self.cfg.fb_threshold


def _make_tracker(grays: list[np.ndarray], cfg: TrackConfig) -> StepTracker:
    if cfg.backend == "lk":
        return LKTracker(grays, cfg)
    if cfg.backend == "dis":
        return DISTracker(grays, cfg)
    if cfg.backend == "learned":
        return LearnedTracker(grays, cfg)
    raise ValueError(f"unknown tracking backend {cfg.backend!r}")


def _to_input(pts: np.ndarray, scale: float) -> np.ndarray:
    # Pixel-centre convention: work pixel centres map back to input pixel centres.
    return pts if scale == 1.0 else (pts + 0.5) / scale - 0.5


def track_grid(frames: np.ndarray, cfg: TrackConfig | None = None) -> Tracklets:
    """Track a query grid in windows of ``cfg.length`` frames starting every ``cfg.stride`` frames.

    ``frames``: (N, H, W, 3) uint8 RGB (or (N, H, W) gray). Returns coordinates at input resolution.
    The query frame is the window's first frame (``query="start"``) or its middle one
    (``"middle"``, tracked forward and backward from there).
    """
    cfg = cfg or TrackConfig()
    if cfg.query not in ("start", "middle"):
        raise ValueError(f"unknown query position {cfg.query!r}")
    n, h, w = frames.shape[:3]
    t0 = time.perf_counter()
    grays, scale = _to_gray(frames, cfg.work_max_side)
    tracker = _make_tracker(grays, cfg)
    starts = list(range(0, max(n - 1, 0), cfg.stride))
    windows = _track_windows(tracker, grays, starts, n, scale, cfg)
    if cfg.restart and cfg.query == "start":
        extra = [t + 1 for t in track_breaks(windows, n, cfg.restart_survival) if t + 1 not in starts and t + 1 < n - 1]
        if extra:  # track again with the restarts in the schedule, so later windows continue them
            windows = _track_windows(tracker, grays, sorted(starts + extra), n, scale, cfg)
    return Tracklets(windows, n, w, h, {"tracking_s": time.perf_counter() - t0})


def track_breaks(windows: list[TrackWindow], n: int, min_survival: float) -> list[int]:
    """Frames ``t`` where fewer than ``min_survival`` of the points live at ``t`` (in windows that
    reach ``t + 1``) are still visible at ``t + 1``."""
    live, kept = np.zeros(n), np.zeros(n)
    for win in windows:
        rows = np.arange(len(win.frame_indices) - 1)
        live[win.frame_indices[rows]] += win.visible[rows].sum(axis=1)
        kept[win.frame_indices[rows]] += (win.visible[rows] & win.visible[rows + 1]).sum(axis=1)
    return [t for t in range(n - 1) if live[t] > 0 and kept[t] < min_survival * live[t]]


def _track_windows(tracker, grays, starts: list[int], n: int, scale: float, cfg: TrackConfig) -> list[TrackWindow]:
    gh, gw = grays[0].shape
    windows, queries = [], []
    for first in starts:
        t_len = min(cfg.length, n - first)
        q = first + (t_len - 1) // 2 if cfg.query == "middle" else first
        if cfg.snap:
            pts, keep = snapped_grid(grays[q], cfg.grid, cfg.min_corner)
        else:
            pts, keep = grid_points(gw, gh, cfg.grid), np.ones(cfg.grid**2, bool)
        win = TrackWindow(
            q,
            np.arange(first, first + t_len),
            np.zeros((t_len, cfg.grid**2, 2), np.float32),
            np.zeros((t_len, cfg.grid**2), bool),
        )
        win.points[q - first], win.visible[q - first] = _to_input(pts, scale), keep
        windows.append(win)
        queries.append((pts, keep))
    for forward in (True, False):
        _sweep(
            tracker,
            windows,
            queries,
            forward,
            (gw, gh),
            scale,
            cfg,
            continue_tracks=forward and cfg.continue_tracks and cfg.query == "start",
        )
    for win in windows:  # lost points keep their last position; zero them so nobody uses them
        win.points[~win.visible] = 0.0
    return windows


def _sweep(
    tracker: StepTracker,
    windows: list[TrackWindow],
    queries: list,
    forward: bool,
    size: tuple[int, int],
    scale: float,
    cfg: TrackConfig,
    continue_tracks: bool = False,
) -> None:
    """Track every window from its query frame to its last (forward) or first frame, in place.

    All windows alive at a frame move in one tracker call, so the cost is one step per frame pair
    and direction whatever the number of windows. With ``continue_tracks`` a window starting at
    frame t continues the live points of the window before it (see :func:`continued_queries`).
    """
    gw, gh = size
    n = max((int(win.frame_indices[-1]) + 1 for win in windows), default=0)
    pos: list = [None] * len(windows)  # current work-resolution points and alive flags per window
    alive: list = [None] * len(windows)
    for t in range(n) if forward else range(n - 1, -1, -1):
        for k, win in enumerate(windows):
            if win.query_frame == t:
                if continue_tracks and k > 0 and pos[k - 1] is not None and windows[k - 1].frame_indices[-1] >= t:
                    queries[k] = continued_queries(*queries[k][:2], pos[k - 1], alive[k - 1], size, cfg.grid)
                    off = t - win.frame_indices[0]
                    win.points[off], win.visible[off], win.continues = (
                        _to_input(queries[k][0], scale),
                        queries[k][1],
                        queries[k][2],
                    )
                pos[k], alive[k] = queries[k][0].copy(), queries[k][1].copy()
        nxt = t + 1 if forward else t - 1
        active = [
            k
            for k, win in enumerate(windows)
            if pos[k] is not None and win.frame_indices[0] <= nxt <= win.frame_indices[-1] and alive[k].any()
        ]
        if not active:
            continue
        idx = [np.flatnonzero(alive[k]) for k in active]
        new, ok = tracker.step(t, nxt, np.concatenate([pos[k][i] for k, i in zip(active, idx)]))
        b = cfg.border
        ok &= (new[:, 0] >= b) & (new[:, 0] <= gw - 1 - b) & (new[:, 1] >= b) & (new[:, 1] <= gh - 1 - b)
        start = 0
        for k, i in zip(active, idx):
            sl = slice(start, start + len(i))
            start += len(i)
            pos[k][i] = new[sl]
            alive[k][i] = ok[sl]
            off = nxt - windows[k].frame_indices[0]
            windows[k].points[off] = _to_input(pos[k], scale)
            windows[k].visible[off] = alive[k]
