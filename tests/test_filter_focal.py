"""The focal filter (WildCamera substitute, AnyCam's candidate sweep): the estimator finds a known focal
from a pure rotation, a long lens reads long, a zoom scores clearly below a suitable clip, and bad
input gives no score and a status, never an exception."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from dynpose.domain.filters import focal
from dynpose.domain.filters.base import FilterFrames
from dynpose.domain.synth import ClipSpec, render_clip

pytestmark = pytest.mark.timeout(120)

W, H = 320, 240


def _frames(clip) -> FilterFrames:
    ts = np.asarray(clip.timestamps, np.float64)
    return FilterFrames(clip.frames, ts, float(clip.spec.fps), clip.width, clip.height)


@pytest.fixture(scope="module")
def clips() -> dict:
    # A small street scene (built once, cached by the renderer), pan + translation, 6 fps like the filter frames.
    base = dict(
        seed=11, layout="street", trajectory="pan_translate", seconds=2.0, width=W, height=H, fps=6.0, texture_scale=0.4
    )
    return {v: render_clip(ClipSpec(variant=v, **base)) for v in ("none", "zoom")}


@pytest.fixture(scope="module")
def results(clips) -> dict:
    return {v: focal.run(_frames(c), focal.FocalConfig(), {}) for v, c in clips.items()}


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A far-away textured wall: smoothed noise at two scales plus random rectangles (corners for LK)."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (h, w)).astype(np.float32), (0, 0), 2.0)
    coarse = rng.uniform(0, 255, (h // 16, w // 16)).astype(np.float32)
    img = 0.5 * img + 0.5 * cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(400):
        x, y = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        dx, dy = int(rng.integers(4, 20)), int(rng.integers(4, 20))
        cv2.rectangle(img, (x, y), (x + dx, y + dy), float(rng.uniform(0, 255)), -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def _rotation_video(f: float, n: int = 12, yaw_deg: float = 1.5, pitch_deg: float = 0.6) -> np.ndarray:
    """Frames of a camera with focal f (pixels, W x H) turning on a tripod in front of a distant texture."""
    f_ref = max(f, 200.0)
    half_w = f_ref * math.tan(math.atan(W / 2 / f) + math.radians(yaw_deg * n) + 0.05)
    half_h = f_ref * math.tan(math.atan(H / 2 / f) + math.radians(pitch_deg * n) + 0.05)
    cw, ch = int(2 * half_w) + 8, int(2 * half_h) + 8
    tex = _texture(ch, cw)
    K = np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1.0]])
    K_ref = np.array([[f_ref, 0, (cw - 1) / 2], [0, f_ref, (ch - 1) / 2], [0, 0, 1.0]])
    out = []
    for k in range(n):
        R, _ = cv2.Rodrigues(np.radians([pitch_deg * k, yaw_deg * k, 0.2 * k]))
        M = K_ref @ R.T @ np.linalg.inv(K)  # view pixel -> reference pixel
        g = cv2.warpPerspective(tex, M, (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        out.append(np.repeat(g[..., None], 3, axis=2))
    return np.stack(out)


def test_candidates_follow_anycam():
    fs = focal.focal_candidates(480)
    assert len(fs) == 32 and np.all(np.diff(fs) > 0)
    assert fs[0] == pytest.approx(0.1 * 480) and fs[-1] == pytest.approx(3.5 * 480)
    gaps = np.diff(fs)
    assert gaps[0] < gaps[-1] / 5  # mostly exponential: dense at short focals


def test_estimate_focal_finds_a_known_focal_from_a_rotation():
    frames = _rotation_video(200.0)
    est = focal.estimate_focal(frames)
    assert abs(est.focal / 200.0 - 1) < 0.1, est
    assert est.confidence > 0.6 and est.lower <= 220.0 and est.upper >= 180.0


def test_a_long_lens_reads_long():
    frames = _rotation_video(1500.0, yaw_deg=0.6, pitch_deg=0.3)  # 6.25 H: beyond the sweep's 3.5 H
    est = focal.estimate_focal(frames)
    assert est.focal > 2.0 * H, est
    r = focal.run(FilterFrames(frames, np.arange(len(frames)) / 6.0, 6.0, W, H))
    assert r.status == "ok" and r.columns["focal_long_px"] > 1400, r.columns
    assert r.columns["focal_long_score"] < 0.2 and r.score < 0.75


def test_suitable_clip_passes(results, clips):
    r = results["none"]
    assert r.status == "ok" and r.score is not None and r.score > 0.8, r.columns
    assert r.columns["focal_max_change_ratio"] < 0.2
    gt = clips["none"].intrinsics[0, 0] * 720 / H
    if math.isfinite(r.columns["focal_clip_px"]):
        assert abs(r.columns["focal_clip_px"] / gt - 1) < 0.25, (r.columns["focal_clip_px"], gt)


def test_zoom_scores_clearly_lower(results):
    good, bad = results["none"], results["zoom"]
    assert bad.status == "ok"
    assert bad.columns["focal_max_change_ratio"] > 0.35, bad.columns
    assert bad.columns["focal_change_score"] < 0.3
    assert bad.score < good.score - 0.3, (bad.score, good.score)


def test_bad_input_gives_no_score_and_a_status():
    one = np.full((1, H, W, 3), 120, np.uint8)
    r = focal.run(FilterFrames(one, np.zeros(1), 6.0, W, H))
    assert r.score is None and r.status == "too_few_frames"
    grey = np.full((8, H, W, 3), 120, np.uint8)
    r = focal.run(FilterFrames(grey, np.arange(8) / 6.0, 6.0, W, H))
    assert r.score is None and r.status == "no_texture"
    tiny = np.random.default_rng(0).integers(0, 255, (8, 16, 16, 3), dtype=np.uint8)
    r = focal.run(FilterFrames(tiny, np.arange(8) / 6.0, 6.0, 16, 16))
    assert r.score is None and r.status == "frames_too_small"
    # nothing trackable from frame to frame
    noise = np.random.default_rng(1).integers(0, 255, (8, 64, 96, 3), dtype=np.uint8)
    r = focal.run(FilterFrames(noise, np.arange(8) / 6.0, 6.0, 96, 64))
    assert r.score is None or 0.0 <= r.score <= 1.0
    assert r.status in ("ok", "focal_unobservable")
    assert focal.estimate_focal(one).confidence == 0.0


def test_a_static_camera_is_no_zoom():
    frames = np.repeat(_rotation_video(300.0, n=1), 8, axis=0)
    r = focal.run(FilterFrames(frames, np.arange(8) / 6.0, 6.0, W, H))
    assert r.status == "ok" and r.columns["focal_max_change_ratio"] == 0.0
    assert r.columns["focal_swept_windows"] == 0  # no motion: the focal is not determined, not guessed


def test_columns_are_exactly_the_declared_ones(results):
    names = [n for n, _ in focal.COLUMNS]
    assert len(names) == len(set(names))
    for r in results.values():
        assert list(r.columns) == names
    one = focal.run(FilterFrames(np.zeros((1, H, W, 3), np.uint8), np.zeros(1), 6.0, W, H))
    assert list(one.columns) == names
