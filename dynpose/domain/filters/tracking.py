"""Point-tracking filter (DynPose-100K appendix A.2, filter 6): shot changes and static cameras.

The paper tracks a grid once over the first 30 frames at 3 fps with BootsTAP; a video scores 0 on
shot change when more than 50% of tracks are lost across one frame, and 0 on dynamics when the
median track moves less than about 5% of the frame size. Here ``annotate.tracking.track_grid``
tracks a coarse grid (``grid`` x ``grid``, snapped to corners) on the 3 fps frames, re-queried every
``stride`` frames so there are live tracks after the first ones leave the view. Rules:

- shot change: the largest share of live tracks lost from one frame to the next (only steps with at
  least ``min_live`` live tracks count) must stay below ``max_lost_share``;
- static camera: the median over tracks of the largest displacement from the query point, as a
  fraction of the frame's short side (the same "frame size" as the flow filter), must exceed
  ``min_motion``;
- cross-check with PySceneDetect (``scenedetect``, BSD-3), not a detector of our own: its
  ``AdaptiveDetector`` (HSV content change relative to the neighbouring frames) runs on the 6 fps
  frames in memory; the number of cuts it reports is a column, its largest adaptive ratio the
  smoothed sub-score. Without the package the sub-score is NaN and left out of the mean.

Back end: chained DIS flow at 240 px with a 2 px forward-backward check. LK, the annotation default,
lost 92% of its points from one 3 fps frame to the next on a fast synthetic pan (ground in
perspective, people close to the camera), as many as at a cut; on the seed-0 suite (96 clips) both
ranked alike (AP 0.33) but DIS lost fewer tracks on suitable clips (largest share 0.28 on average
against 0.49 for LK at 480 px) and kept them higher (mean score 0.91 against 0.81).

What the rules catch (seed 0): a hard cut loses 74-100% of the live tracks at once and PySceneDetect
sees it too (shot_change mean 0.37); a tripod keeps its background tracks in place (median motion
0.1% of the short side; tripod mean 0.67, the motion rule at 0.04 averaged with two passing rules).
A static scene filmed by a moving camera has moving tracks: no rule catches it (the paper's third,
"static scene" component is not specified; a rigid-motion residual on the tracks did not separate
such clips from suitable ones). Fast motion, zoom, very long lenses and flat cartoons also lose many
tracks per step and read partly as cuts; the slowest suitable orbits lose up to 60%.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pyarrow as pa

from dynpose.domain.annotate.tracking import TrackConfig, Tracklets, track_grid
from dynpose.domain.filters.base import FilterFrames, FilterResult, mean_score, sigmoid_pass
from dynpose.domain.filters.flow import work_long_side
from dynpose.domain.status import Status

NAME = "filter_tracking"


@dataclass
class TrackingFilterConfig:
    fps: float = 3.0  # paper: tracking filter at 3 fps
    max_frames: int = 30  # paper: 30 frames (10 s at 3 fps), the start of longer videos
    grid: int = 16  # grid x grid query points (annotation: 42); 256 points are enough for shares and medians
    stride: int = 5  # a new query grid every 5 frames (1.7 s), so live tracks exist all along
    backend: str = "dis"  # annotate.tracking back end: "dis" (chained DIS flow) | "lk"
    work_max_side: int = 240  # tracking resolution (long side, pixels)
    fb_threshold: float = 2.0  # forward-backward error (work pixels) above which a track is lost
    max_lost_share: float = 0.5  # paper: more than 50% of tracks lost across one frame -> shot change
    # sigmoid width of the shot-change rule (share of tracks); 0.15 ranked seed 0 about the same
    # (AP 0.35 vs 0.33) and took 0.03-0.06 off clean clips
    lost_width: float = 0.1
    min_live: int = 16  # steps with fewer live tracks are not judged (a share of few points is noise)
    min_motion: float = 0.05  # paper: median track motion below ~5% of frame size -> static
    motion_width: float = 0.015  # sigmoid width of the static rule (fraction of the short side)
    min_track_frames: int = 2  # a track counts for the motion median when seen in this many frames
    scenedetect: bool = True  # run PySceneDetect's AdaptiveDetector as a third sub-score (needs `scenedetect`)
    scene_fps: float = 6.0  # frames fed to scenedetect (the 6 fps filter frames: less motion per step than 3 fps)
    # AdaptiveDetector adaptive_threshold (library default 3.0); seed 0: cuts 1.83-3.0, suitable <= 1.32
    scene_threshold: float = 1.8
    scene_width: float = 0.2  # sigmoid width of the scenedetect rule (adaptive ratio)
    scene_window: int = 2  # AdaptiveDetector window_width (frames each side)
    scene_min_content: float = 15.0  # AdaptiveDetector min_content_val (library default)
    min_side: int = 32  # frames with a shorter side (pixels) cannot be tracked (OpenCV's DIS crashes below 32 px)
    min_points: int = 16  # fewer trackable query points in the whole clip: no_texture


COLUMNS: list[tuple[str, pa.DataType]] = [
    ("track_frames", pa.int64()),  # frames tracked (at `fps`, at most `max_frames`)
    ("track_points", pa.int64()),  # query points tracked, all windows together
    ("max_lost_share", pa.float64()),  # largest share of live tracks lost from one frame to the next
    ("max_lost_frame", pa.int64()),  # index (in the tracked frames) of the frame before that step
    ("max_lost_time_s", pa.float64()),  # source time (seconds) of that frame
    # median over tracks of the largest displacement from the query point, fraction of the short side
    ("median_motion", pa.float64()),
    # cuts PySceneDetect's AdaptiveDetector reports on the 6 fps frames (null without the package)
    ("scene_cuts", pa.int64()),
    ("scene_max_ratio", pa.float64()),  # its largest adaptive ratio among frames with enough content change
    ("shot_change_score", pa.float64()),  # smoothed "max_lost_share < max_lost_share" (1 = no cut)
    ("motion_score", pa.float64()),  # smoothed "median_motion > min_motion" (1 = the camera moves)
    ("scenedetect_score", pa.float64()),  # smoothed "scene_max_ratio < scene_threshold" (1 = no cut)
]


def thin(frames: FilterFrames, fps: float) -> FilterFrames:
    """The frames at ``fps`` or less: by timestamps, or every k-th frame when they are not usable."""
    if not frames.fps or frames.fps <= fps or len(frames) == 0:
        return frames
    ts = np.asarray(frames.timestamps, np.float64)
    if len(ts) == len(frames) and np.isfinite(ts).all() and (np.diff(ts) >= 0).all():
        return frames.at_fps(fps)
    keep = np.arange(0, len(frames), max(1, round(frames.fps / fps)))
    return FilterFrames(
        frames.frames[keep],
        ts[keep] if len(ts) == len(frames) else keep / fps,
        fps,
        frames.source_width,
        frames.source_height,
    )


def lost_shares(tracks: Tracklets, min_live: int) -> np.ndarray:
    """Per step t -> t+1, the share of tracks live at t (all windows) lost at t+1; NaN below ``min_live`` live."""
    live = np.zeros(max(tracks.num_frames - 1, 0))
    lost = np.zeros_like(live)
    for w in tracks.windows:
        v = w.visible
        for o in range(len(w.frame_indices) - 1):
            t = int(w.frame_indices[o])
            live[t] += v[o].sum()
            lost[t] += (v[o] & ~v[o + 1]).sum()
    return np.where(live >= max(1, min_live), lost / np.maximum(live, 1), np.nan)


def track_motion(tracks: Tracklets, min_frames: int) -> np.ndarray:
    """Per track seen in ``min_frames`` frames or more, its largest displacement from its query point (pixels)."""
    out = []
    for w in tracks.windows:
        q = w.query_offset
        seen = w.visible[q] & (w.visible.sum(axis=0) >= min_frames)
        if not seen.any():
            continue
        d = np.linalg.norm(w.points[:, seen] - w.points[q, seen][None], axis=2)
        d[~w.visible[:, seen]] = 0.0
        out.append(d.max(axis=0))
    return np.concatenate(out) if out else np.zeros(0)


def scene_cuts(frames: np.ndarray, fps: float, cfg: TrackingFilterConfig) -> tuple[int, float]:
    """(cuts, largest adaptive ratio) of PySceneDetect's AdaptiveDetector fed the frames in memory."""
    from scenedetect import FrameTimecode, StatsManager
    from scenedetect.detectors import AdaptiveDetector

    det = AdaptiveDetector(
        adaptive_threshold=cfg.scene_threshold,
        min_scene_len=2,
        window_width=cfg.scene_window,
        min_content_val=cfg.scene_min_content,
    )
    det.stats_manager = StatsManager()
    ratio_key = det.get_metrics()[-1]
    rate = float(fps) if fps and fps > 0 else 6.0
    cuts, codes = [], []
    for i, f in enumerate(frames):
        code = FrameTimecode(i, fps=rate)
        codes.append(code)
        cuts += det.process_frame(code, cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    cuts += det.post_process(codes[-1])
    best = 0.0
    for code in codes:
        content, ratio = det.stats_manager.get_metrics(code, ["content_val", ratio_key])
        if content is not None and ratio is not None and content >= cfg.scene_min_content:
            best = max(best, float(ratio))
    return len(cuts), best


def _nan_columns() -> dict:
    ints = {"track_frames": 0, "track_points": 0, "max_lost_frame": None, "scene_cuts": None}
    return {name: ints.get(name, float("nan")) for name, _ in COLUMNS}


def run(frames: FilterFrames, cfg: TrackingFilterConfig | None = None, video: dict | None = None) -> FilterResult:
    cfg = cfg or TrackingFilterConfig()
    cols = _nan_columns()
    sub = thin(frames, cfg.fps)
    fr = sub.frames[: cfg.max_frames]
    ts = sub.timestamps[: cfg.max_frames]
    cols["track_frames"] = len(fr)
    if len(fr) < 2:
        msg = f"{len(fr)} frame(s) at {cfg.fps:g} fps; tracking needs 2"
        return FilterResult(None, Status.too_few_frames, msg, cols)
    if min(frames.width, frames.height) < cfg.min_side:
        msg = f"{frames.width}x{frames.height} frames; tracking needs a side >= {cfg.min_side}"
        return FilterResult(None, "frames_too_small", msg, cols)
    side = work_long_side(frames.height, frames.width, cfg.work_max_side, cfg.min_side)
    tcfg = TrackConfig(
        grid=cfg.grid,
        stride=cfg.stride,
        length=cfg.max_frames,
        work_max_side=side,
        fb_threshold=cfg.fb_threshold,
        backend=cfg.backend,
        continue_tracks=False,
    )
    tracks = track_grid(fr, tcfg)
    n_points = int(sum(w.visible[w.query_offset].sum() for w in tracks.windows))
    cols["track_points"] = n_points
    if n_points < cfg.min_points:
        return FilterResult(None, Status.no_texture, f"{n_points} trackable query points (< {cfg.min_points})", cols)
    shares = lost_shares(tracks, cfg.min_live)
    if np.isfinite(shares).any():
        k = int(np.nanargmax(shares))
        cols.update(max_lost_share=float(shares[k]), max_lost_frame=k, max_lost_time_s=float(ts[k]))
    motion = track_motion(tracks, cfg.min_track_frames)
    if len(motion):
        cols["median_motion"] = float(np.median(motion)) / min(tracks.width, tracks.height)
    cols["shot_change_score"] = sigmoid_pass(cols["max_lost_share"], cfg.max_lost_share, cfg.lost_width, False)
    cols["motion_score"] = sigmoid_pass(cols["median_motion"], cfg.min_motion, cfg.motion_width, good_above=True)
    notes = [f"{n_points} points over {len(fr)} frames"]
    if cfg.scenedetect:
        try:
            scene_frames = thin(frames, cfg.scene_fps)
            if len(scene_frames) >= 2 * cfg.scene_window + 2:
                n_cuts, ratio = scene_cuts(scene_frames.frames, scene_frames.fps, cfg)
                cols.update(scene_cuts=n_cuts, scene_max_ratio=ratio)
                cols["scenedetect_score"] = sigmoid_pass(ratio, cfg.scene_threshold, cfg.scene_width, good_above=False)
            else:
                notes.append("too few frames for scenedetect")
        except ImportError:
            notes.append("scenedetect not installed")
    score = mean_score([cols["shot_change_score"], cols["motion_score"], cols["scenedetect_score"]])
    if score is None:
        return FilterResult(None, "not_measurable", "; ".join(notes + ["no step had enough live tracks"]), cols)
    return FilterResult(score, Status.ok, "; ".join(notes), cols)
