"""Optical-flow filter (DynPose-100K appendix A.2, filter 5): static cameras, cuts and whip pans.

Sequential dense flow between the 6 fps filter frames (OpenCV DIS, the back end of
``annotate.flow``, at ``work_max_side``; the paper uses RAFT). Per frame pair the flow magnitude is
averaged over all pixels and expressed as a fraction of the frame size, then three rules:

- camera moves: mean sequential flow > 2.127% of the frame size (the paper's 80th percentile of
  Panda-70M flow; low flow "tends to correspond to static scenes and cameras");
- no jump: the peak sequential flow < mean + 4 std of the sequential flow (a shot change);
- no whip: the largest 1 s sliding-window mean flow < 15% of the frame size.

Each rule is smoothed with ``sigmoid_pass`` and the score is their mean.

"Frame size" is the frame's short side (``norm="short_side"``). The paper does not say which
length it means; we take the short side because (1) the paper states its pixel thresholds at 720p,
i.e. a short side of 720 (the focal rule, ``FilterFrames.to_720p``), so a fraction of the short side
is a fraction of those 720 pixels; (2) it is the same for a portrait and a landscape version of a
clip; (3) on the seed-0 synthetic suite (96 clips, 14 suitable) the diagonal, 2.04x longer for 16:9,
put 10 of the 14 suitable clips below 2.127% (slow dollies, forward walks and orbits move 1.1-2.1%
of the diagonal per 1/6 s), the short side 2 (two slow street dollies, 0.9-1.1%); tripod clips stay
far below with either (0.1-1.2% of the short side). ``norm`` can be "diagonal", "width", "height" or
"long_side" instead.

Flow of a pair is rescaled to the nominal interval ``1 / fps`` (a 25 fps source sampled at 6 fps
has 0.16 and 0.2 s steps), so the peak rule does not see the sampling jitter. DIS alone saturates
near 20% of the short side (a 40 px shift of a 240x135 frame reads as 7-27 px), which would hide
the whip pans the window rule is for; a pair whose global phase-correlation shift is large starts
DIS from that shift (``phase_init_above``).

Limits: with ``n`` pairs a single spike can reach at most ``(n - 1) / sqrt(n)`` standard deviations
above the mean (population std), so the paper's peak rule cannot fire on fewer than 18 pairs
(3 s at 6 fps) and only barely below 30; a cut between two similar views of one scene gives a flow
no larger than ordinary motion (DIS finds a plausible smooth field), so it is the tracking filter
that catches such cuts. A static scene filmed by a moving camera has ordinary flow: this filter
does not catch it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import pyarrow as pa

from dynpose.domain.annotate.flow import dis_flow
from dynpose.domain.filters.base import FilterFrames, FilterResult, mean_score, sigmoid_pass
from dynpose.domain.status import Status

NAME = "filter_flow"


@dataclass
class FlowConfig:
    # flow computed at this long side (pixels); seed 0: 480 px gives means +4% (median) in 2.2x the time
    work_max_side: int = 240
    method: str = "dis"  # "dis" (OpenCV DIS, as annotate.flow) | "farneback"
    # DIS preset: "ultrafast" | "fast" | "medium"; seed 0: "medium" gives means +8% (median) in 2x the time
    dis_preset: str = "fast"
    # a pair whose global phase-correlation shift exceeds this (fraction of frame size) starts the flow
    # from that shift: DIS alone saturates near 20% of the short side (a 40 px shift of a 240x135 frame
    # read as 7-27 px), which would hide whip pans; None: never
    phase_init_above: float | None = 0.1
    phase_min_response: float = 0.05  # phase-correlation peak response below which its shift is not trusted
    norm: str = "short_side"  # what "frame size" means: "short_side" | "diagonal" | "width" | "height" | "long_side"
    min_mean_flow: float = 0.02127  # paper: mean sequential flow above 2.127% of frame size -> camera moves
    # sigmoid width of the mean rule (fraction of frame size); seed 0: tripods (<= 1.2%) score <= 0.14,
    # the slowest passing suitable clip (2.25%) 0.56; 0.003 and 0.008 ranked the same (AP 0.22-0.24)
    mean_flow_width: float = 0.005
    peak_std: float = 4.0  # paper: peak sequential flow must be below mean + 4 std
    peak_width: float = 0.5  # sigmoid width of the peak rule, in std (1.0: same AP on seed 0, suitable -0.03)
    window_s: float = 1.0  # paper: 1 s sliding windows
    max_window_flow: float = 0.15  # paper: max 1 s window mean flow below 15% of frame size
    window_width: float = 0.02  # sigmoid width of the window rule (fraction of frame size); untuned: seed 0 has no whip
    min_peak_pairs: int = 5  # fewer pairs: the peak rule is not measured (NaN, left out of the mean)
    min_side: int = 32  # frames with a shorter side (pixels) are too small (OpenCV's DIS crashes below 32 px)
    min_texture: float = 2.0  # grey-level std below this on every frame: nothing to track (no_texture)


COLUMNS: list[tuple[str, pa.DataType]] = [
    ("flow_pairs", pa.int64()),  # number of sequential frame pairs measured
    ("mean_flow", pa.float64()),  # mean over pairs of the per-pair mean flow magnitude, fraction of frame size
    ("peak_flow", pa.float64()),  # largest per-pair mean flow, fraction of frame size
    ("std_flow", pa.float64()),  # population std over pairs of the per-pair mean flow, fraction of frame size
    ("peak_z", pa.float64()),  # (peak - mean) / std: how many std the peak stands out
    ("max_window_flow", pa.float64()),  # largest mean flow over a window_s sliding window, fraction of frame size
    ("mean_flow_score", pa.float64()),  # smoothed "mean_flow > min_mean_flow" (1 = the camera moves)
    ("peak_flow_score", pa.float64()),  # smoothed "peak_z < peak_std" (1 = no jump / cut)
    ("window_flow_score", pa.float64()),  # smoothed "max_window_flow < max_window_flow" (1 = no whip pan)
]


def frame_size(width: int, height: int, norm: str) -> float:
    """The length, in pixels, that flow magnitudes are divided by."""
    sizes = {
        "short_side": min(width, height),
        "long_side": max(width, height),
        "width": width,
        "height": height,
        "diagonal": math.hypot(width, height),
    }
    if norm not in sizes:
        raise ValueError(f"unknown frame size norm {norm!r}; expected one of {sorted(sizes)}")
    return float(sizes[norm])


def _grey_work(frames: np.ndarray, max_side: int, min_short: int) -> list[np.ndarray]:
    h, w = frames.shape[1:3]
    scale = min(1.0, work_long_side(h, w, max_side, min_short) / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    out = []
    for f in frames:
        g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) if f.ndim == 3 else f
        out.append(np.ascontiguousarray(g if scale == 1.0 else cv2.resize(g, size, interpolation=cv2.INTER_AREA)))
    return out


class _PairFlow:
    """Dense flow of a pair, started from the global phase-correlation shift when that shift is large."""

    def __init__(self, cfg: FlowConfig, h: int, w: int, size: float):
        if cfg.method not in ("dis", "farneback"):
            raise ValueError(f"unknown flow method {cfg.method!r}; expected 'dis' or 'farneback'")
        self.cfg, self.size = cfg, size
        self.window = cv2.createHanningWindow((w, h), cv2.CV_32F)

    def initial(self, a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
        if self.cfg.phase_init_above is None:
            return None
        (sx, sy), response = cv2.phaseCorrelate(a.astype(np.float32), b.astype(np.float32), self.window)
        if response < self.cfg.phase_min_response or math.hypot(sx, sy) <= self.cfg.phase_init_above * self.size:
            return None
        init = np.empty(a.shape + (2,), np.float32)
        init[..., 0], init[..., 1] = sx, sy
        return init

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        init = self.initial(a, b)
        if self.cfg.method == "farneback":
            flags = cv2.OPTFLOW_USE_INITIAL_FLOW if init is not None else 0
            return cv2.calcOpticalFlowFarneback(a, b, init, 0.5, 4, 15, 3, 5, 1.2, flags)
        if init is None:
            return dis_flow(a, b, self.cfg.dis_preset)
        # DIS refines a flow it is given (same size, float32, 2 channels); a fresh object keeps dis_flow's cache clean.
        return cv2.DISOpticalFlow_create(_DIS_PRESETS[self.cfg.dis_preset]).calc(a, b, init)


_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def sequential_flow(frames: FilterFrames, cfg: FlowConfig) -> np.ndarray:
    """Per sequential pair, the mean flow magnitude as a fraction of frame size, per nominal 1/fps step."""
    grey = _grey_work(frames.frames, cfg.work_max_side, cfg.min_side)
    h, w = grey[0].shape
    size = frame_size(w, h, cfg.norm)
    pair = _PairFlow(cfg, h, w, size)
    mags = np.array([float(np.linalg.norm(pair(a, b), axis=2).mean()) for a, b in zip(grey[:-1], grey[1:])]) / size
    if frames.fps and frames.fps > 0 and len(frames.timestamps) == len(frames):
        dt = np.diff(np.asarray(frames.timestamps, np.float64))
        nominal = 1.0 / frames.fps
        ok = np.isfinite(dt) & (dt > 0)
        # Per nominal step; clamped so a timestamp glitch cannot blow a pair up or erase it.
        factor = np.where(ok, np.clip(nominal / np.where(ok, dt, nominal), 0.5, 2.0), 1.0)
        mags = mags * factor
    return mags


def work_long_side(height: int, width: int, max_side: int, min_short: int) -> int:
    """``max_side``, raised so the short side keeps ``min_short`` pixels (OpenCV 4.11's DIS crashes on
    landscape frames less than 32 px high, e.g. 240x20)."""
    short, long_ = min(height, width), max(height, width)
    return max(int(max_side), math.ceil(min_short * long_ / max(short, 1)))


def window_means(mags: np.ndarray, k: int) -> np.ndarray:
    """Means of every ``k`` consecutive values (all of them when there are fewer)."""
    k = max(1, min(int(k), len(mags)))
    c = np.concatenate([[0.0], np.cumsum(mags)])
    return (c[k:] - c[:-k]) / k


def _nan_columns() -> dict:
    return {name: (0 if name == "flow_pairs" else float("nan")) for name, _ in COLUMNS}


def run(frames: FilterFrames, cfg: FlowConfig | None = None, video: dict | None = None) -> FilterResult:
    cfg = cfg or FlowConfig()
    cols = _nan_columns()
    n = len(frames)
    if n < 2:
        return FilterResult(None, Status.too_few_frames, f"{n} frame(s); flow needs 2", cols)
    if min(frames.width, frames.height) < cfg.min_side:
        msg = f"{frames.width}x{frames.height} frames; flow needs a side >= {cfg.min_side}"
        return FilterResult(None, "frames_too_small", msg, cols)
    stds = [float(cv2.meanStdDev(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY))[1][0, 0]) for f in frames.frames]
    if max(stds) < cfg.min_texture:
        return FilterResult(None, Status.no_texture, f"every frame is uniform (grey std <= {max(stds):.2f})", cols)
    mags = sequential_flow(frames, cfg)
    mean, std, peak = float(mags.mean()), float(mags.std()), float(mags.max())
    if len(mags) < cfg.min_peak_pairs:
        z = float("nan")
    else:
        z = (peak - mean) / std if std > 1e-12 else 0.0
    k = round(cfg.window_s * frames.fps) if frames.fps and frames.fps > 0 else len(mags)
    win = float(window_means(mags, k).max())
    cols.update(flow_pairs=len(mags), mean_flow=mean, peak_flow=peak, std_flow=std, peak_z=z, max_window_flow=win)
    cols["mean_flow_score"] = sigmoid_pass(mean, cfg.min_mean_flow, cfg.mean_flow_width, good_above=True)
    cols["peak_flow_score"] = sigmoid_pass(z, cfg.peak_std, cfg.peak_width, good_above=False)
    cols["window_flow_score"] = sigmoid_pass(win, cfg.max_window_flow, cfg.window_width, good_above=False)
    score = mean_score([cols["mean_flow_score"], cols["peak_flow_score"], cols["window_flow_score"]])
    msg = f"{len(mags)} pairs"
    return FilterResult(score, Status.ok, msg, cols)
