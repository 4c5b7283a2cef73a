"""The tracking filter: a cut loses every track at once, a still camera's tracks stay put, bad input gives no score."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dynpose.domain.filters import tracking
from dynpose.domain.filters.base import FilterFrames
from dynpose.domain.status import Status
from tests.filter_textures import texture

NAMES = [name for name, _ in tracking.COLUMNS]
H, W = 135, 240


def clip(n: int = 24, step: float = 4.0, cut_at: int | None = None, fps: float = 6.0) -> FilterFrames:
    """A camera panning ``step`` px per frame over one texture; from frame ``cut_at`` on, over another one."""
    m = int(abs(step) * n) + 8
    scenes = [texture(H + 2 * m, W + 2 * m, 0), texture(H + 2 * m, W + 2 * m, 7)]
    frames = []
    for t in range(n):
        big = scenes[int(cut_at is not None and t >= cut_at)]
        M = np.float32([[1, 0, -(m // 2 + step * t)], [0, 1, -m // 2]])
        frames.append(cv2.warpAffine(big, M, (W, H), flags=cv2.INTER_LINEAR))
    return FilterFrames(np.stack(frames), np.arange(n) / fps, fps, W * 4, H * 4)


def test_moving_camera_passes():
    res = tracking.run(clip(), tracking.TrackingFilterConfig())
    assert res.status == Status.ok and list(res.columns) == NAMES
    assert res.columns["track_frames"] == 12  # 24 frames at 6 fps thinned to 3 fps
    assert res.columns["max_lost_share"] < 0.3
    assert res.columns["median_motion"] > 0.1  # 8 px per 3 fps frame on a 135 px short side, over several frames
    assert res.score > 0.85


def test_cut_loses_the_tracks_and_scores_clearly_lower():
    cfg = tracking.TrackingFilterConfig()
    cut = tracking.run(clip(cut_at=12), cfg)  # 6 fps frame 12 = 3 fps frame 6
    smooth = tracking.run(clip(), cfg)
    assert cut.columns["max_lost_share"] > 0.8
    assert cut.columns["max_lost_frame"] == 5  # lost across 3 fps frames 5 -> 6
    assert cut.columns["max_lost_time_s"] == pytest.approx(10 / 6.0)
    assert cut.columns["shot_change_score"] < 0.1
    assert cut.score < smooth.score - 0.3


def test_scenedetect_counts_the_cut():
    pytest.importorskip("scenedetect")
    cut = tracking.run(clip(cut_at=12), tracking.TrackingFilterConfig())
    smooth = tracking.run(clip(), tracking.TrackingFilterConfig())
    assert cut.columns["scene_cuts"] == 1 and smooth.columns["scene_cuts"] == 0
    assert cut.columns["scenedetect_score"] < 0.2 < 0.8 < smooth.columns["scenedetect_score"]


def test_scenedetect_can_be_left_out():
    res = tracking.run(clip(cut_at=12), tracking.TrackingFilterConfig(scenedetect=False))
    assert res.columns["scene_cuts"] is None and np.isnan(res.columns["scenedetect_score"])
    assert res.score == pytest.approx(np.mean([res.columns["shot_change_score"], res.columns["motion_score"]]))


def test_still_camera_fails_the_motion_rule():
    still = clip(step=0.0)
    frames = still.frames.copy()
    for t in range(len(frames)):  # something moves, the camera does not
        cv2.circle(frames[t], (30 + 7 * t, H // 2), 12, (250, 40, 40), -1)
    res = tracking.run(FilterFrames(frames, still.timestamps, 6.0, W, H), tracking.TrackingFilterConfig())
    assert res.columns["median_motion"] < 0.01
    assert res.columns["motion_score"] < 0.1
    assert res.score < tracking.run(clip(), tracking.TrackingFilterConfig()).score - 0.25


def test_only_the_first_max_frames_are_tracked():
    res = tracking.run(clip(n=30), tracking.TrackingFilterConfig(max_frames=8))
    assert res.columns["track_frames"] == 8


def test_unusable_timestamps_thin_by_frame_count():
    ff = clip()
    ff.timestamps = np.full(len(ff), np.nan)
    res = tracking.run(ff, tracking.TrackingFilterConfig())
    assert res.status == Status.ok and res.columns["track_frames"] == 12
