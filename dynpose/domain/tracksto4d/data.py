"""Point tracks as TracksTo4D's input tensor: our tracker's windows linked into long tracks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dynpose.domain.annotate.sfm import SfmConfig, build_correspondences
from dynpose.domain.annotate.tracking import TrackConfig, Tracklets, track_grid
from dynpose.domain.camera import image_centre, prior_focal

MIN_OBSERVED = 10  # the paper keeps tracks observed in more than 10 frames


@dataclass
class TrackTensor:
    """A video's tracks: ``xy`` (N, P, 2) pixels (OpenCV convention), ``visible`` (N, P), its camera guess."""

    xy: np.ndarray
    visible: np.ndarray
    width: int
    height: int
    focal: float  # pixels; the network sees (xy - principal point) / focal
    source: np.ndarray | None = None  # (P,) a tracklet point (window-major index) of each track

    @property
    def num_frames(self) -> int:
        return int(self.xy.shape[0])

    @property
    def num_tracks(self) -> int:
        return int(self.xy.shape[1])

    def normalised(self, frames: np.ndarray | None = None, tracks: np.ndarray | None = None) -> np.ndarray:
        """(n, p, 3) float32: normalised x, y (zero where unseen) and visibility, for the chosen rows/columns."""
        xy, vis = self.xy, self.visible
        if frames is not None:
            xy, vis = xy[frames], vis[frames]
        if tracks is not None:
            xy, vis = xy[:, tracks], vis[:, tracks]
        cx, cy = image_centre(self.width, self.height)
        norm = (xy - np.array([cx, cy])) / self.focal
        norm = np.where(vis[..., None], norm, 0.0)
        return np.concatenate([norm, vis[..., None]], axis=-1).astype(np.float32)


def from_tracklets(tracklets: Tracklets, width: int, height: int, focal: float | None = None) -> TrackTensor:
    """Link the windows' continued points into tracks and keep those observed in > MIN_OBSERVED frames."""
    corr = build_correspondences(tracklets, None, SfmConfig(min_track_length=MIN_OBSERVED + 1, obs_per_frame=0))
    n, p = tracklets.num_frames, corr.num_tracks
    xy = np.zeros((n, p, 2), np.float32)
    visible = np.zeros((n, p), bool)
    xy[corr.frame, corr.track] = corr.xy
    visible[corr.frame, corr.track] = True
    source = np.zeros(p, np.int64)
    source[corr.track] = corr.source  # any one of the track's tracklet points
    return TrackTensor(xy, visible, width, height, focal or prior_focal(width, height), source)


def video_tracks(frames: np.ndarray, focal: float | None = None, cfg: TrackConfig | None = None) -> TrackTensor:
    """Track ``frames`` (N, H, W, 3) with our default tracker and link the tracks."""
    h, w = frames.shape[1:3]
    return from_tracklets(track_grid(frames, cfg), w, h, focal)


def sample_segment(
    tracks: TrackTensor, rng: np.random.Generator, frames: tuple[int, int] = (20, 50), points: int = 100
) -> np.ndarray | None:
    """A training sample as the paper draws one: N consecutive frames (N in ``frames``), ``points``
    tracks observed in more than MIN_OBSERVED of them; None if the clip has too few such tracks."""
    n_max = min(frames[1], tracks.num_frames)
    if n_max < frames[0]:
        return None
    n = int(rng.integers(frames[0], n_max + 1))
    start = int(rng.integers(0, tracks.num_frames - n + 1))
    rows = np.arange(start, start + n)
    seen = tracks.visible[rows].sum(0) > MIN_OBSERVED
    candidates = np.flatnonzero(seen)
    if len(candidates) < points:
        return None
    return tracks.normalised(rows, rng.choice(candidates, points, replace=False))
