"""The masking filter: a small moving object passes, masks covering most frames fail, bad input gives no score."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dynpose.domain.annotate.masks import DynamicMasks
from dynpose.domain.filters import masking
from dynpose.domain.filters.base import FilterFrames
from dynpose.domain.status import Status
from tests.filter_textures import texture

NAMES = [name for name, _ in masking.COLUMNS]
H, W = 135, 240


def panning_clip_with_blob(n: int = 12, fps: float = 6.0) -> FilterFrames:
    """The camera pans over a textured plane while a disc (about 4% of the frame) moves against it."""
    m = 4 * n + 8
    big = texture(H + 2 * m, W + 2 * m)
    frames = []
    for t in range(n):
        M = np.float32([[1, 0, -(m // 2 + 3 * t)], [0, 1, -m // 2]])
        img = cv2.warpAffine(big, M, (W, H), flags=cv2.INTER_LINEAR)
        cv2.circle(img, (40 + 9 * t, 60), 16, (240, 240, 60), -1)
        frames.append(img)
    return FilterFrames(np.stack(frames), np.arange(n) / fps, fps, W * 4, H * 4)


def test_small_moving_object_passes():
    res = masking.run(panning_clip_with_blob(), masking.MaskingFilterConfig())
    assert res.status == Status.ok and list(res.columns) == NAMES
    assert res.columns["mask_frames"] == 12 and res.columns["mask_keyframes"] == 2  # a keyframe every 6 frames
    assert 0.0 < res.columns["p90_mask_area"] < 0.3
    assert res.columns["share_frames_above"] == 0.0
    assert res.score > 0.95


def _fake_masks(areas: np.ndarray, captured: dict):
    """A compute_dynamic_masks stand-in: frame t masked over its top ``areas[t]`` share of rows."""

    def fake(frames, cfg):
        captured["cfg"] = cfg
        n, h, w = frames.shape[:3]
        union = np.zeros((n, h, w), bool)
        for t, a in enumerate(areas):
            union[t, : round(a * h)] = True
        comp = {name: np.zeros_like(union) for name in ("semantic", "interaction", "motion", "propagated")}
        comp["semantic"] = union.copy()
        return DynamicMasks(union=union, components=comp, detected_frames=np.arange(0, n, cfg.detect_every))

    return fake


def test_masks_covering_most_frames_fail(monkeypatch):
    captured: dict = {}
    areas = np.array([0.1, 0.2] + [0.95] * 10)
    monkeypatch.setattr(masking, "compute_dynamic_masks", _fake_masks(areas, captured))
    big = masking.run(panning_clip_with_blob(), masking.MaskingFilterConfig())
    assert captured["cfg"].detect_every == 6 and captured["cfg"].propagate == 6  # every 1 s, propagated 1 s at 6 fps
    assert big.columns["p90_mask_area"] == pytest.approx(np.percentile(areas, 90), abs=0.01)
    assert big.columns["share_frames_above"] == pytest.approx(10 / 12)
    assert big.columns["mean_semantic_area"] == pytest.approx(np.mean(areas[[0, 6]]), abs=0.01)
    assert big.score < 0.1
    # a tenth of the frames with big masks is not enough: the 90th percentile stays low
    few = np.array([0.1] * 11 + [0.95])
    monkeypatch.setattr(masking, "compute_dynamic_masks", _fake_masks(few, captured))
    ok = masking.run(panning_clip_with_blob(), masking.MaskingFilterConfig())
    assert ok.columns["p90_mask_area"] < 0.2 and ok.score > 0.99


def test_keyframe_spacing_follows_the_frame_rate(monkeypatch):
    captured: dict = {}
    monkeypatch.setattr(masking, "compute_dynamic_masks", _fake_masks(np.zeros(12), captured))
    ff = panning_clip_with_blob(fps=3.0)
    masking.run(ff, masking.MaskingFilterConfig())
    assert captured["cfg"].detect_every == 3 and captured["cfg"].propagate == 3
