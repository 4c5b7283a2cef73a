"""Grid tracking follows known image motion and forward-backward checks drop bad points."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dynpose.domain.annotate.tracking import TrackConfig, grid_points, track_grid


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth multi-scale noise plus blobs: trackable everywhere, no aliasing."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w), np.float32)
    for s in (4, 8, 16, 32, 64):
        img += cv2.resize(
            rng.random((s, s * w // h)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
        ) / np.sqrt(s)
    img = (img - img.min()) / (img.max() - img.min()) * 200 + 20
    for _ in range(h * w // 400):  # small blobs: corners everywhere, no flat patch larger than an LK window
        cv2.circle(
            img, (int(rng.integers(w)), int(rng.integers(h))), int(rng.integers(2, 5)), float(rng.integers(0, 255)), -1
        )
    return cv2.GaussianBlur(img, (0, 0), 1.0)


def shifted(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    out = cv2.warpAffine(img, m, img.shape[::-1], flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return np.repeat(np.clip(out, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def translating_clip(n: int, v: tuple[float, float], h: int = 160, w: int = 240, seed: int = 0) -> np.ndarray:
    big = texture(h + 200, w + 200, seed)  # margin so shifted content comes from real texture
    crop = lambda a: a[100 : 100 + h, 100 : 100 + w]  # noqa: E731
    return np.stack([crop(shifted(big, v[0] * t, v[1] * t)) for t in range(n)])


def test_grid_points_cover_image():
    pts = grid_points(240, 160, 4)
    assert pts.shape == (16, 2)
    assert np.allclose(pts[:4, 0], [30, 90, 150, 210]) and np.allclose(pts[::4, 1], [20, 60, 100, 140])


@pytest.mark.parametrize("backend,query", [("lk", "start"), ("dis", "start"), ("lk", "middle")])
def test_tracks_follow_known_translation(backend, query):
    v = (0.7, -0.35)
    frames = translating_clip(16, v)
    cfg = TrackConfig(grid=12, stride=5, length=10, backend=backend, query=query)
    tr = track_grid(frames, cfg)
    assert [w.query_frame for w in tr.windows] == ([0, 5, 10] if query == "start" else [4, 9, 12])
    assert [w.frame_indices[0] for w in tr.windows] == [0, 5, 10]
    assert [len(w.frame_indices) for w in tr.windows] == [10, 10, 6]  # the last window is cut by the clip
    errs = []
    for win in tr.windows:
        assert win.points.shape == (len(win.frame_indices), 144, 2) and win.points.dtype == np.float32
        q = win.query_offset
        assert win.visible[q].mean() > 0.9  # query points start visible (cells without a corner are dropped)
        expected = win.points[q][None] + np.outer(win.frame_indices - win.query_frame, v)[:, None, :]
        errs.append(np.linalg.norm(win.points - expected, axis=2)[win.visible])
        assert win.visible.mean() > 0.8
    errs = np.concatenate(errs)
    assert np.median(errs) < 0.15 and np.percentile(errs, 95) < 0.5


def test_work_resolution_returns_input_coordinates():
    v = (1.0, 0.5)
    frames = translating_clip(8, v, h=240, w=360)
    tr = track_grid(frames, TrackConfig(grid=10, length=8, work_max_side=180))
    win = tr.windows[0]
    expected = win.points[0][None] + np.outer(win.frame_indices, v)[:, None, :]
    err = np.linalg.norm(win.points - expected, axis=2)[win.visible]
    assert win.points[0].max() > 300  # input-resolution coordinates, not work-resolution ones
    assert np.median(err) < 0.5


def test_points_leaving_the_frame_become_invisible():
    frames = translating_clip(12, (6.0, 0.0))  # 66 px to the right over the clip
    tr = track_grid(frames, TrackConfig(grid=12, stride=20, length=12))
    win = tr.windows[0]
    x0 = win.points[0, :, 0]
    gone = x0 + 6.0 * 11 > 240 - 2  # these must leave the 240 px wide frame
    near = x0 + 6.0 * 11 > 240 - 12  # these end within an LK window of the edge
    assert gone.any()
    assert not win.visible[-1, gone].any()
    assert win.visible[-1, ~near].mean() > 0.9
    # Once lost a point stays lost and its coordinates are zeroed.
    lost_once = np.maximum.accumulate(~win.visible, axis=0)
    assert not (win.visible & lost_once).any()
    assert np.all(win.points[~win.visible] == 0)


def test_occluded_points_become_invisible():
    frames = translating_clip(12, (0.5, 0.25), h=240, w=320).copy()
    occluder = np.repeat(texture(60, 80, seed=7).astype(np.uint8)[..., None], 3, axis=2)
    for t in range(6, 12):  # a different textured patch jumps in front at frame 6
        frames[t, 90:150, 120:200] = occluder
    tr = track_grid(frames, TrackConfig(grid=16, stride=20, length=12))
    win = tr.windows[0]
    x, y = win.points[5, :, 0], win.points[5, :, 1]
    under = (x > 125) & (x < 195) & (y > 95) & (y < 145) & win.visible[5]
    # LK windows that straddle a motion boundary fail too (conservative): judge points well away.
    far = ((x < 80) | (x > 240) | (y < 50) | (y > 190)) & (x < 300) & (y < 225) & win.visible[5]
    assert under.sum() >= 10 and far.sum() >= 100
    assert win.visible[6, under].mean() < 0.1
    assert win.visible[11, far].mean() > 0.9


def test_flat_frames_give_no_tracks():
    frames = np.full((6, 80, 120, 3), 128, np.uint8)
    tr = track_grid(frames, TrackConfig(grid=8))
    assert tr.num_observations == sum(w.visible[0].sum() for w in tr.windows)  # only the query points
    assert all(not w.visible[1:].any() for w in tr.windows)


def test_survival_and_short_inputs():
    frames = translating_clip(7, (0.3, 0.3), h=80, w=120)
    tr = track_grid(frames, TrackConfig(grid=6, stride=5, length=30))
    s = tr.survival()
    assert s.shape == (2, 7) and np.all(s[:, 0] == 1.0) and np.isnan(s[1, 2:]).all()
    assert track_grid(frames[:1], TrackConfig(grid=6)).windows == []


def test_learned_backend_plumbing(tmp_path):
    torch = pytest.importorskip("torch")
    from dynpose.domain.annotate.tracking import LearnedTracker, correlation_tracker_net

    frames = translating_clip(6, (0.5, 0.5), h=64, w=96)
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        track_grid(frames, TrackConfig(grid=4, backend="learned", checkpoint=str(tmp_path / "missing.pt")))
    torch.manual_seed(0)
    ckpt = tmp_path / "random.pt"
    torch.save(correlation_tracker_net().state_dict(), ckpt)  # random weights: plumbing only
    tr = track_grid(
        frames, TrackConfig(grid=4, stride=5, length=6, backend="learned", checkpoint=str(ckpt), fb_threshold=100.0)
    )
    win = tr.windows[0]
    assert win.points.shape == (6, 16, 2) and win.visible.shape == (6, 16)
    moved = np.abs(win.points[1][win.visible[1]] - win.points[0][win.visible[1]]).max()
    assert moved <= LearnedTracker.radius + 1e-3  # a step never leaves its search window


def test_new_windows_continue_live_tracks():
    v = (0.6, 0.3)
    frames = translating_clip(26, v)
    cfg = TrackConfig(grid=12, stride=5, length=10)
    tr = track_grid(frames, cfg)
    assert (tr.windows[0].continues == -1).all()
    for prev, win in zip(tr.windows, tr.windows[1:]):
        cont = np.flatnonzero(win.continues >= 0)
        assert (
            len(cont) > 0.5 * 144
        )  # most cells still hold a live point of the previous window (corners drift across cell edges)
        q, at = win.query_offset, win.query_frame - prev.frame_indices[0]
        # A continued query starts exactly where the previous window's track is, and stays with it.
        assert np.array_equal(win.points[q, cont], prev.points[at, win.continues[cont]])
        assert prev.visible[at, win.continues[cont]].all()
        both = prev.visible[at:, win.continues[cont]] & win.visible[: len(prev.frame_indices) - at, cont]
        assert np.array_equal(
            win.points[: len(prev.frame_indices) - at, cont][both], prev.points[at:, win.continues[cont]][both]
        )
    # Still one point per cell and still accurate.
    errs = np.concatenate(
        [
            np.linalg.norm(
                w.points - (w.points[0][None] + np.outer(w.frame_indices - w.query_frame, v)[:, None]), axis=2
            )[w.visible]
            for w in tr.windows
        ]
    )
    assert np.median(errs) < 0.15
    fresh = track_grid(frames, TrackConfig(grid=12, stride=5, length=10, continue_tracks=False))
    assert all((w.continues == -1).all() for w in fresh.windows)
