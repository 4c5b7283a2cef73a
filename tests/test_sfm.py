"""Global BA on exact synthetic tracks: known trajectory recovered, dynamic tracks masked out."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dynpose.domain.annotate.sfm import SfmConfig, build_correspondences, run_sfm
from dynpose.domain.annotate.tracking import Tracklets, TrackWindow
from dynpose.domain.camera import Intrinsics, PoseResult, camera_centers
from dynpose.evaluation.metrics.trajectory import evaluate_trajectory

W, H, F = 640, 360, 500.0
K = np.array([[F, 0, (W - 1) / 2], [0, F, (H - 1) / 2], [0, 0, 1]])


def look_at(c: np.ndarray, target: np.ndarray) -> np.ndarray:
    z = (target - c) / np.linalg.norm(target - c)
    x = np.cross([0.0, -1.0, 0.0], z)
    x /= np.linalg.norm(x)
    r = np.stack([x, np.cross(z, x), z])
    return np.hstack([r, (-r @ c)[:, None]])


def project(pose: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xc = pts @ pose[:, :3].T + pose[:, 3]
    uv = xc @ K.T
    uv = uv[:, :2] / uv[:, 2:]
    ok = (xc[:, 2] > 0.1) & (uv[:, 0] > 2) & (uv[:, 0] < W - 3) & (uv[:, 1] > 2) & (uv[:, 1] < H - 3)
    return uv, ok


def scene(n: int = 36, n_static: int = 1200, n_dyn: int = 400, noise: float = 0.3, seed: int = 0):
    """Poses, tracklets (stride 5, length 30) of static + dynamic points, and the dynamic masks."""
    rng = np.random.default_rng(seed)
    s = np.linspace(0, 1, n)
    centres = np.stack([2.0 * np.sin(1.2 * s), 0.3 * np.sin(3 * s), -1.0 + 1.5 * s], 1)
    poses = np.stack([look_at(c, np.array([0.5 * np.sin(2 * t), 0.0, 9.0])) for c, t in zip(centres, s)])
    static = rng.uniform([-7, -3, 5], [7, 3, 13], (n_static, 3))
    offsets = rng.normal(size=(n_dyn, 3))
    offsets = offsets / np.linalg.norm(offsets, axis=1, keepdims=True) * 1.2  # a 1.2 m sphere...
    dyn_centre = np.stack([-2.5 + 5.0 * s, 0.3 + 0 * s, 6.0 + 0 * s], 1)  # ...crossing the view
    masks = np.zeros((n, H, W), bool)
    windows = []
    for q in range(0, n - 1, 5):
        frames = np.arange(q, min(q + 30, n))
        pts = np.zeros((len(frames), n_static + n_dyn, 2), np.float32)
        vis = np.zeros((len(frames), n_static + n_dyn), bool)
        for k, f in enumerate(frames):
            uv_s, ok_s = project(poses[f], static)
            uv_d, ok_d = project(poses[f], dyn_centre[f] + offsets)
            pts[k] = np.concatenate([uv_s, uv_d]) + rng.normal(0, noise, (n_static + n_dyn, 2))
            vis[k] = np.concatenate([ok_s, ok_d])
        vis = np.minimum.accumulate(vis, axis=0)  # a lost track stays lost
        pts[~vis] = 0
        windows.append(TrackWindow(q, frames, pts, vis))
    for f in range(n):
        c = poses[f][:, :3] @ dyn_centre[f] + poses[f][:, 3]
        uv = K @ c
        cv2.circle(masks[f].view(np.uint8), (int(uv[0] / uv[2]), int(uv[1] / uv[2])), int(1.35 * F / c[2]) + 3, 1, -1)
    gt = PoseResult(np.arange(n) / 12.0, poses, np.ones(n, bool), Intrinsics(F, F, K[0, 2], K[1, 2], W, H))
    return Tracklets(windows, n, W, H), masks, gt


@pytest.fixture(scope="module")
def synthetic():
    return scene()


FAST = SfmConfig(obs_per_frame=250, fallback=False)


@pytest.fixture(scope="module")
def masked_result(synthetic):
    tracks, masks, gt = synthetic
    return run_sfm(tracks, masks, gt.timestamps, FAST)


def test_recovers_known_trajectory_and_focal(synthetic, masked_result):
    tracks, masks, gt = synthetic
    res = masked_result
    ev = evaluate_trajectory(res, gt)
    extent = np.ptp(camera_centers(gt.poses_w2c), axis=0).max()
    assert res.registered.all() and ev["success"]
    assert ev["ate"] < 0.01 * extent, ev
    assert ev["rpe_r"] < 0.2, ev
    assert abs(res.intrinsics.fx - F) < 0.03 * F
    assert abs(res.intrinsics.cx - K[0, 2]) < 1.0 and abs(res.intrinsics.cy - K[1, 2]) < 1.0  # COLMAP's +0.5 undone
    assert res.reprojection_error < 1.0 and res.num_points > 100
    assert res.extra["stats"]["masked"] > 0


@pytest.mark.slow  # 30 s; the masked result's accuracy is checked by default
def test_unmasked_dynamic_tracks_do_not_help(synthetic, masked_result):
    tracks, masks, gt = synthetic
    masked = evaluate_trajectory(masked_result, gt)
    unmasked = evaluate_trajectory(run_sfm(tracks, None, gt.timestamps, FAST), gt)
    assert unmasked["ate"] >= 0.9 * masked["ate"], (masked, unmasked)


def test_mask_policies():
    # One window, two tracks over 4 frames; track 1 enters the mask at frame 2.
    pts = np.zeros((4, 2, 2), np.float32)
    pts[:, 0] = [10, 10]
    pts[:, 1] = [[30, 10], [32, 10], [34, 10], [36, 10]]
    win = TrackWindow(0, np.arange(4), pts, np.ones((4, 2), bool))
    tracks = Tracklets([win], 4, 50, 20)
    masks = np.zeros((4, 20, 50), bool)
    masks[2, :, 33:35] = True  # only frame 2 is masked at track 1
    cfg = SfmConfig(min_track_length=1, obs_per_frame=0, mask_dilate=0)
    drop = build_correspondences(tracks, masks, SfmConfig(**{**cfg.__dict__, "mask_policy": "drop"}))
    trunc = build_correspondences(tracks, masks, cfg)
    assert sorted(drop.frame[drop.track == drop.track.max()]) == [0, 1, 3]
    assert sorted(trunc.frame[trunc.track == trunc.track.max()]) == [0, 1]
    assert trunc.stats["masked"] == 2 and drop.stats["masked"] == 1
    # Queried in the middle (frame 1), a track is cut on each side of its query frame separately:
    # frame 2 is masked, so frames 2-3 go; frame 0 (the other side) stays.
    mid = build_correspondences(
        Tracklets([TrackWindow(1, np.arange(4), pts, np.ones((4, 2), bool))], 4, 50, 20), masks, cfg
    )
    assert sorted(mid.frame[mid.track == mid.track.max()]) == [0, 1]
    masks[1, :, 31:33] = True  # now the query point itself is masked: nothing of track 1 is left
    mid = build_correspondences(
        Tracklets([TrackWindow(1, np.arange(4), pts, np.ones((4, 2), bool))], 4, 50, 20), masks, cfg
    )
    assert mid.num_tracks == 1 and sorted(mid.frame) == [0, 1, 2, 3]


def test_track_selection_meets_quota(synthetic):
    tracks, masks, _ = synthetic
    corr = build_correspondences(tracks, masks, SfmConfig(obs_per_frame=100))
    per_frame = np.bincount(corr.frame, minlength=tracks.num_frames)
    assert per_frame.min() >= 100
    assert len(corr.frame) < 0.5 * tracks.num_observations


def test_bad_tracks_fail_gracefully():
    n = 10
    ts = np.arange(n) / 12.0
    # Too few tracks.
    few = Tracklets(
        [TrackWindow(0, np.arange(n), np.full((n, 5, 2), 50, np.float32), np.ones((n, 5), bool))], n, 100, 80
    )
    res = run_sfm(few, None, ts, FAST)
    assert not res.registered.any() and "few" in res.extra["reason"]
    # Many tracks that never move (static camera, no parallax): no exception, nothing sensible.
    rng = np.random.default_rng(0)
    p = np.repeat(rng.uniform(5, 75, (1, 400, 2)).astype(np.float32), n, axis=0)
    still = Tracklets([TrackWindow(0, np.arange(n), p, np.ones((n, 400), bool))], n, 100, 80)
    res = run_sfm(still, None, ts, FAST)
    assert res.poses_w2c.shape == (n, 3, 4) and len(res.registered) == n
    assert not res.registered.any() and res.extra["reason"]


def test_maps_again_without_focal_calibration_when_it_breaks_mapping(synthetic, monkeypatch):
    # Seen on a low-parallax street dolly: after calibrate_view_graph neither mapper built a model,
    # without it both did. Emulate a calibration that ruins mapping; the second round must recover.
    from dynpose.domain.annotate import sfm

    tracks, masks, gt = synthetic
    calibrated = []
    real_init, real_map = sfm._initialise_focal, sfm._map
    monkeypatch.setattr(
        sfm,
        "_initialise_focal",
        lambda db, init, focal: (calibrated.append(init == "calibrated"), real_init(db, init, focal))[1],
    )
    monkeypatch.setattr(
        sfm, "_map", lambda db, out, mapper, cfg: {} if calibrated[-1] else real_map(db, out, mapper, cfg)
    )
    res = run_sfm(tracks, masks, gt.timestamps, FAST)
    assert calibrated == [True, False]
    assert [(a["calibrated_focal"], a["models"]) for a in res.extra["attempts"]] == [(True, 0), (False, 1)]
    assert res.registered.all() and evaluate_trajectory(res, gt)["success"]


def test_continued_windows_link_into_long_tracks():
    # Window 1 (query frame 2) continues both points of window 0; the overlap collapses to one
    # observation per frame, and a continued point masked at the query frame is not linked.
    pts0 = np.zeros((4, 2, 2), np.float32)
    pts0[:, 0] = [[10, 10], [11, 10], [12, 10], [13, 10]]
    pts0[:, 1] = [[30, 10], [31, 10], [32, 10], [33, 10]]
    pts1 = np.zeros((4, 2, 2), np.float32)
    pts1[:, 0] = [[12, 10], [13, 10], [14, 10], [15, 10]]
    pts1[:, 1] = [[32, 10], [33, 10], [34, 10], [35, 10]]
    win0 = TrackWindow(0, np.arange(4), pts0, np.ones((4, 2), bool))
    win1 = TrackWindow(2, np.arange(2, 6), pts1, np.ones((4, 2), bool), continues=np.array([0, 1]))
    tracks = Tracklets([win0, win1], 6, 50, 20)
    cfg = SfmConfig(min_track_length=1, obs_per_frame=0, mask_dilate=0, mask_policy="drop")
    corr = build_correspondences(tracks, None, cfg)
    assert corr.num_tracks == 2 and len(corr.frame) == 12
    for t in range(2):
        assert sorted(corr.frame[corr.track == t]) == [0, 1, 2, 3, 4, 5]
    masks = np.zeros((6, 20, 50), bool)
    masks[2, :, 31:33] = True  # point 1 at the query frame of window 1
    corr = build_correspondences(tracks, masks, cfg)
    lengths = sorted(np.bincount(corr.track).tolist())
    assert corr.num_tracks == 3 and lengths == [3, 3, 6]  # 0-1,3 and 3-5 stay apart; point 0 is linked


def test_keeps_the_global_model_when_retriangulation_loses_it(synthetic, monkeypatch):
    # Seen on a slow forward dolly: the global mapper's final re-triangulation left no 3-D point
    # and pycolmap returned no model, although the model before that step was right.
    from dynpose.domain.annotate import sfm

    tracks, masks, gt = synthetic
    real_map = sfm._map
    calls = []

    def flaky(db, out, mapper, cfg):
        calls.append((mapper, cfg.mapper_options.get("skip_retriangulation", False)))
        return (
            {}
            if mapper == "global" and not cfg.mapper_options.get("skip_retriangulation")
            else real_map(db, out, mapper, cfg)
        )

    monkeypatch.setattr(sfm, "_map", flaky)
    res = run_sfm(tracks, masks, gt.timestamps, SfmConfig(obs_per_frame=250))
    assert calls == [("global", False), ("global", True)]
    assert [(a["mapper"], a["models"]) for a in res.extra["attempts"]] == [
        ("global", 0),
        ("global_no_retriangulation", 1),
    ]
    assert res.extra["mapper"] == "global_no_retriangulation"
    assert res.registered.all() and evaluate_trajectory(res, gt)["success"]
