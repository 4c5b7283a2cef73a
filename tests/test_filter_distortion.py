"""The distortion filter (DroidCalib substitute): the line sweep recovers strong UCM distortion from
straight edges, a fisheye image circle is found, the fisheye variant scores clearly below a suitable
clip, letterbox bars are no fisheye, and bad input gives no score and a status, never an exception."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dynpose.domain.filters import distortion
from dynpose.domain.filters.base import FilterFrames
from dynpose.domain.synth import ClipSpec, render_clip

pytestmark = pytest.mark.timeout(120)

W, H = 320, 240


def _ff(frames: np.ndarray) -> FilterFrames:
    return FilterFrames(frames, np.arange(len(frames)) / 6.0, 6.0, frames.shape[2], frames.shape[1])


@pytest.fixture(scope="module")
def results() -> dict:
    base = dict(
        seed=11, layout="street", trajectory="pan_translate", seconds=1.5, width=W, height=H, fps=6.0, texture_scale=0.4
    )
    out = {}
    for v in ("none", "fisheye"):
        c = render_clip(ClipSpec(variant=v, **base))
        out[v] = distortion.run(FilterFrames(c.frames, np.asarray(c.timestamps, np.float64), 6.0, c.width, c.height))
    return out


def _grid(h: int, w: int, step: int = 64) -> np.ndarray:
    """A pinhole picture of straight lines: a grid of dark lines on light blocks of varied grey."""
    rng = np.random.default_rng(0)
    img = np.full((h, w), 200, np.uint8)
    for y in range(0, h, step):
        for x in range(0, w, step):
            img[y : y + step, x : x + step] = int(rng.integers(120, 240))
    for y in range(step // 2, h, step):
        cv2.line(img, (0, y), (w - 1, y), 30, 2)
    for x in range(step // 2, w, step):
        cv2.line(img, (x, 0), (x, h - 1), 30, 2)
    return img


def _ucm_view(xi: float, fc: float) -> np.ndarray:
    """The grid seen through a UCM lens (xi, central focal fc) filling the W x H frame (no image circle)."""
    f = fc * (1 + xi)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    m = np.stack([(xs - (W - 1) / 2) / f, (ys - (H - 1) / 2) / f], -1).reshape(-1, 2)
    ray, ok = distortion.ucm_rays(m, xi)
    assert ok.all() and (ray[:, 2] > 0.2).all()
    f_pin = 150.0  # the straight-line picture, a wide pinhole view of the same directions
    big = _grid(1400, 1800)
    u = f_pin * ray[:, 0] / ray[:, 2] + (big.shape[1] - 1) / 2
    v = f_pin * ray[:, 1] / ray[:, 2] + (big.shape[0] - 1) / 2
    g = cv2.remap(big, u.reshape(H, W).astype(np.float32), v.reshape(H, W).astype(np.float32), cv2.INTER_LINEAR)
    return np.repeat(g[..., None], 3, axis=2)


def test_lines_recover_strong_distortion_without_an_image_circle():
    r = distortion.run(_ff(_ucm_view(1.5, 150.0)[None]))
    assert r.status == "ok" and r.columns["distortion_circle_fraction"] < 0.1, r.columns
    assert r.columns["distortion_xi"] >= 1.0, r.columns
    assert r.columns["distortion_gain"] > 1.5
    assert r.score < 0.3


def test_straight_lines_read_pinhole():
    r = distortion.run(_ff(_ucm_view(0.0, 160.0)[None]))
    assert r.status == "ok" and r.columns["distortion_xi"] <= 0.25, r.columns
    assert r.score > 0.9


def test_suitable_clip_passes(results):
    r = results["none"]
    assert r.status == "ok" and r.score > 0.9, r.columns
    assert r.columns["distortion_xi"] < 0.5 and r.columns["distortion_circle_fraction"] < 0.1


def test_fisheye_scores_clearly_lower(results):
    good, bad = results["none"], results["fisheye"]
    assert bad.status == "ok"
    assert bad.columns["distortion_circle_fraction"] > 0.6, bad.columns
    assert bad.score < 0.1 and bad.score < good.score - 0.5


def test_letterbox_bars_are_no_fisheye():
    img = _ucm_view(0.0, 160.0)
    img[:40] = 0
    img[-40:] = 0
    r = distortion.run(_ff(img[None]))
    assert r.columns["distortion_circle_fraction"] < 0.2, r.columns
    assert r.score > 0.9


def test_bad_input_gives_no_score_and_a_status():
    r = distortion.run(_ff(np.zeros((0, H, W, 3), np.uint8)))
    assert r.score is None and r.status == "too_few_frames"
    r = distortion.run(_ff(np.full((4, H, W, 3), 128, np.uint8)))
    assert r.score is None and r.status == "too_few_lines"
    r = distortion.run(_ff(np.random.default_rng(0).integers(0, 255, (4, 16, 16, 3), dtype=np.uint8)))
    assert r.score is None and r.status == "frames_too_small"


def test_columns_are_exactly_the_declared_ones(results):
    names = [n for n, _ in distortion.COLUMNS]
    assert len(names) == len(set(names))
    for r in results.values():
        assert list(r.columns) == names
    assert list(distortion.run(_ff(np.full((2, H, W, 3), 128, np.uint8))).columns) == names
