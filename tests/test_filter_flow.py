"""The flow filter: a moving camera passes, a still camera, a jump and a whip pan fail, bad input gives no score."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dynpose.domain.filters import flow
from dynpose.domain.filters.base import FilterFrames
from dynpose.domain.status import Status

NAMES = [name for name, _ in flow.COLUMNS]


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth multi-scale noise plus small blobs: flow is well defined everywhere."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w), np.float32)
    for s in (4, 8, 16, 32):
        noise = rng.random((s, max(1, s * w // h))).astype(np.float32)
        img += cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC) / np.sqrt(s)
    img = (img - img.min()) / (img.max() - img.min()) * 200 + 20
    for _ in range(h * w // 300):
        centre = (int(rng.integers(w)), int(rng.integers(h)))
        cv2.circle(img, centre, int(rng.integers(2, 5)), float(rng.integers(0, 255)), -1)
    return np.clip(cv2.GaussianBlur(img, (0, 0), 1.0), 0, 255).astype(np.uint8)


def clip(offsets, h: int = 135, w: int = 240, fps: float = 6.0, seed: int = 0) -> FilterFrames:
    """Frames cropped from a large texture at the given (x, y) offsets (camera translation in pixels)."""
    offsets = np.asarray(offsets, float)
    m = int(np.abs(offsets).max()) + 4
    big = texture(h + 2 * m, w + 2 * m, seed)
    out = []
    for dx, dy in offsets:
        M = np.float32([[1, 0, -(m + dx)], [0, 1, -(m + dy)]])
        out.append(np.repeat(cv2.warpAffine(big, M, (w, h), flags=cv2.INTER_LINEAR)[..., None], 3, axis=2))
    return FilterFrames(np.stack(out), np.arange(len(out)) / fps, fps, w * 4, h * 4)


def still_with_blob(n: int = 24, h: int = 135, w: int = 240) -> FilterFrames:
    """A tripod shot: a still textured background and a small disc crossing it."""
    base = texture(h, w, 1)
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


@pytest.mark.parametrize(
    "frames,status",
    [
        (np.zeros((1, 90, 160, 3), np.uint8), Status.too_few_frames),
        (np.zeros((0, 90, 160, 3), np.uint8), Status.too_few_frames),
        (np.full((12, 90, 160, 3), 128, np.uint8), Status.no_texture),
        (np.random.default_rng(0).integers(0, 255, (12, 8, 10, 3), dtype=np.uint8), "frames_too_small"),
    ],
)
def test_bad_input_gives_no_score(frames, status):
    ff = FilterFrames(frames, np.arange(len(frames)) / 6.0, 6.0, 160, 90)
    res = flow.run(ff, flow.FlowConfig(), {"video_id": "x"})
    assert res.score is None and res.status == status and res.message
    assert list(res.columns) == NAMES


def test_columns_match_the_declared_schema():
    from dynpose.domain.filters.base import result_schema

    res = flow.run(clip(pan(12, 5.0)))
    schema = result_schema(flow.COLUMNS)
    assert set(res.columns) <= set(schema.names) and flow.NAME == "filter_flow"


def test_a_very_wide_frame_keeps_a_dis_safe_height():
    # 480x40 would be 240x20 at the work size, where OpenCV's DIS crashes: the work size keeps 32 px
    assert flow.work_long_side(40, 480, 240, 32) == 384
    res = flow.run(clip(pan(8, 3.0), h=40, w=480), flow.FlowConfig())
    assert res.status == Status.ok and res.columns["mean_flow"] == pytest.approx(3.0 / 40, rel=0.25)
