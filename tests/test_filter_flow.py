"""The flow filter: a moving camera passes, a still camera, a jump and a whip pan fail, bad input gives no score."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dynpose.domain.filters import flow
from dynpose.domain.filters.base import FilterFrames
from dynpose.domain.status import Status
from tests.filter_textures import texture

NAMES = [name for name, _ in flow.COLUMNS]


def clip(offsets, h: int = 135, w: int = 240, fps: float = 6.0, seed: int = 0) -> FilterFrames:
    """Frames cropped from a large texture at the given (x, y) offsets (camera translation in pixels)."""
    offsets = np.asarray(offsets, float)
    m = int(np.abs(offsets).max()) + 4
    big = texture(h + 2 * m, w + 2 * m, seed, colour=False)
    out = []
    for dx, dy in offsets:
        M = np.float32([[1, 0, -(m + dx)], [0, 1, -(m + dy)]])
        out.append(np.repeat(cv2.warpAffine(big, M, (w, h), flags=cv2.INTER_LINEAR)[..., None], 3, axis=2))
    return FilterFrames(np.stack(out), np.arange(len(out)) / fps, fps, w * 4, h * 4)


def still_with_blob(n: int = 24, h: int = 135, w: int = 240) -> FilterFrames:
    """A tripod shot: a still textured background and a small disc crossing it."""
    base = texture(h, w, 1, colour=False)
    frames = []
    for t in range(n):
        img = base.copy()
        cv2.circle(img, (20 + 6 * t, h // 2), 10, 250, -1)
        frames.append(np.repeat(img[..., None], 3, axis=2))
    return FilterFrames(np.stack(frames), np.arange(n) / 6.0, 6.0, w, h)


def pan(n: int, step: float) -> np.ndarray:
    return np.stack([np.arange(n) * step, np.zeros(n)], 1)


def test_moving_camera_passes_and_flow_is_a_share_of_the_short_side():
    res = flow.run(clip(pan(24, 8.1)), flow.FlowConfig())  # 8.1 px of a 135 px short side = 6% per frame
    assert res.status == Status.ok and list(res.columns) == NAMES
    assert res.columns["mean_flow"] == pytest.approx(8.1 / 135, rel=0.15)
    assert res.columns["flow_pairs"] == 23
    assert res.score > 0.9
    diag = flow.run(clip(pan(24, 8.1)), flow.FlowConfig(norm="diagonal"))
    assert diag.columns["mean_flow"] == pytest.approx(8.1 / np.hypot(240, 135), rel=0.15)


def test_still_camera_scores_clearly_lower_than_a_moving_one():
    still = flow.run(still_with_blob(), flow.FlowConfig())
    moving = flow.run(clip(pan(24, 8.1)), flow.FlowConfig())
    assert still.columns["mean_flow"] < 0.01
    assert still.columns["mean_flow_score"] < 0.1
    assert still.score < moving.score - 0.25


def test_a_jump_fails_the_peak_rule():
    steps = np.full(40, 2.0)
    steps[20] = 30.0  # one pair jumps: a cut-like spike in flow
    res = flow.run(clip(np.stack([np.concatenate([[0], np.cumsum(steps)]), np.zeros(41)], 1)), flow.FlowConfig())
    assert res.columns["peak_z"] > 5 and res.columns["peak_flow_score"] < 0.1
    smooth = flow.run(clip(pan(41, 2.0)), flow.FlowConfig())
    assert smooth.columns["peak_flow_score"] > 0.5 and smooth.score > res.score + 0.2


def test_a_whip_pan_fails_the_window_rule():
    steps = np.full(24, 4.0)
    steps[8:16] = 40.0  # 1.3 s at ~30% of the short side per frame
    res = flow.run(clip(np.stack([np.concatenate([[0], np.cumsum(steps)]), np.zeros(25)], 1)), flow.FlowConfig())
    assert res.columns["max_window_flow"] > 0.2
    assert res.columns["window_flow_score"] < 0.1


def test_irregular_sampling_is_rescaled_to_the_nominal_step():
    ff = clip(pan(13, 6.0))
    ff.timestamps = np.arange(13) * 0.2  # 0.2 s steps at "6 fps"
    res = flow.run(ff, flow.FlowConfig())
    assert res.columns["mean_flow"] == pytest.approx(6.0 / 135 * (1 / 6) / 0.2, rel=0.15)


def test_a_very_wide_frame_keeps_a_dis_safe_height():
    # 480x40 would be 240x20 at the work size, where OpenCV's DIS crashes: the work size keeps 32 px
    assert flow.work_long_side(40, 480, 240, 32) == 384
    res = flow.run(clip(pan(8, 3.0), h=40, w=480), flow.FlowConfig())
    assert res.status == Status.ok and res.columns["mean_flow"] == pytest.approx(3.0 / 40, rel=0.25)
