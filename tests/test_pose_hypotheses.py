"""Issue 15's pose options on exact synthetic geometry: motion level, self-consistency, breaks, bridging."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from dynpose.domain.annotate import sfm
from dynpose.domain.annotate.motion_level import cauchy_scale, dynamic_track_masks, track_gamma
from dynpose.domain.annotate.quality import TierSettings, assess
from dynpose.domain.annotate.sfm import (
    SfmConfig,
    bridge_matches,
    build_correspondences,
    run_sfm,
    self_consistency,
    track_breaks,
)
from dynpose.domain.annotate.tracking import TrackConfig, track_grid
from dynpose.domain.annotate.tracking import track_breaks as tracking_breaks
from dynpose.evaluation.ablation import roc_auc
from dynpose.evaluation.metrics.trajectory import evaluate_trajectory
from tests.test_sfm import FAST, scene


@pytest.fixture(scope="module")
def exact():
    return scene(n_static=600, n_dyn=200, noise=0.3)


def test_cauchy_scale_is_the_residual_size():
    r = np.array([[1.0, 1.0, 1.0], [10.0, 10.0, 10.0], [2.0, 0.0, 0.0]])
    valid = np.array([[True] * 3, [True] * 3, [True, False, False]])
    gamma = cauchy_scale(r, valid)
    assert gamma[0] == pytest.approx(1.0, rel=0.06) and gamma[1] == pytest.approx(10.0, rel=0.06)
    assert gamma[2] == pytest.approx(2.0, rel=0.06)  # the invalid zeros do not count
    assert np.isnan(cauchy_scale(r, np.zeros_like(valid))).all()


def test_motion_level_separates_moving_points_and_masks_them(exact):
    tracks, masks, gt = exact
    gamma = track_gamma(tracks, gt)  # exact poses: static points fit within the 0.3 px noise
    moving = np.concatenate([np.arange(800) >= 600 for _ in tracks.windows])
    g = np.concatenate(gamma)
    assert roc_auc(g, moving) > 0.99
    assert np.nanmedian(g[~moving]) < 0.6 and np.nanmedian(g[moving]) > 3.0
    region = dynamic_track_masks(tracks, gamma, 3.0)
    inter, union = (region & masks).sum(), (region | masks).sum()
    assert inter / union > 0.5  # the moving sphere's points, densified, cover its mask


def test_self_consistency_prefers_poses_that_agree_with_the_tracks(exact):
    tracks, _, gt = exact
    cfg = SfmConfig(obs_per_frame=0)
    corr = build_correspondences(tracks, None, cfg)
    static = np.isin(corr.source, np.concatenate([k * 800 + np.arange(600) for k in range(len(tracks.windows))]))
    corr = replace(corr, frame=corr.frame[static], track=corr.track[static], xy=corr.xy[static])
    right = self_consistency(gt, corr, cfg)
    # a broken hypothesis: every camera turned by a random 3 degree rotation
    rng = np.random.default_rng(0)
    turned = gt.poses_w2c.copy()
    for p in turned:
        p[:, :3] = cv2.Rodrigues(rng.normal(size=3) * np.radians(3.0) / np.sqrt(3))[0] @ p[:, :3]
    wrong = self_consistency(replace(gt, poses_w2c=turned), corr, cfg)
    assert np.isfinite(right) and wrong > 2 * right


def test_selection_maps_every_initialisation_and_keeps_the_most_consistent(exact, monkeypatch):
    tracks, masks, gt = exact
    every = replace(
        FAST, select="self_consistency", focal_inits=("calibrated", "guess", "sweep"), consistency_accept=None
    )
    res = run_sfm(tracks, masks, gt.timestamps, every, focal_hint=600.0)
    names = [h["name"] for h in res.extra["hypotheses"]]
    assert names == ["calibrated", "guess", "sweep"]
    assert res.extra["hypotheses"][2]["initial_focal"] == 600.0
    scores = {h["name"]: h["self_consistency"] for h in res.extra["hypotheses"]}
    chosen = [h["name"] for h in res.extra["hypotheses"] if h["chosen"]]
    assert chosen == [res.extra["focal_init"]] and scores[chosen[0]] == min(scores.values())
    assert len(res.extra["hypothesis_results"]) == 3 and res.registered.all()
    # "first" stops at the first initialisation that registers, an accepted score likewise
    first = run_sfm(tracks, masks, gt.timestamps, replace(every, select="first"), focal_hint=600.0)
    assert [h["name"] for h in first.extra["hypotheses"]] == ["calibrated"]
    # (a generous threshold: a rerun's score differs in the last digits, pycolmap is not bit-reproducible)
    accepted = replace(every, consistency_accept=10 * scores["calibrated"] + 1.0)
    res = run_sfm(tracks, masks, gt.timestamps, accepted, focal_hint=600.0)
    assert [h["name"] for h in res.extra["hypotheses"]] == ["calibrated"]


def test_motion_level_refinement_drops_points_above_the_maximum_and_adjusts_again():
    # COLMAP's own outlier filter already removes the fast sphere's points here, so drop at a
    # maximum inside the tracking noise: about half the static points go, the model holds.
    tracks, masks, gt = scene(n_static=600, n_dyn=60, noise=0.3)
    res = run_sfm(tracks, masks, gt.timestamps, replace(FAST, motion_level=True, gamma_max=0.35))
    assert res.extra["stats"]["motion_level_dropped_observations"] > 1000
    assert len(res.extra["track_gamma"]) == len(tracks.windows) and res.registered.all()
    assert evaluate_trajectory(res, gt)["ate"] < 0.05


def test_self_consistency_is_a_tier_input(exact):
    _, _, gt = exact
    scored = replace(gt, reprojection_error=0.5, extra={"self_consistency": 12.0})
    assert assess(scored).tier == "tier1" and assess(scored).self_consistency == 12.0
    assert assess(scored, tiers=TierSettings(max_self_consistency=5.0)).tier == "failed"


def test_track_breaks_find_a_gap():
    cfg = SfmConfig(min_track_length=1, obs_per_frame=0)
    tracks, _, _ = scene(n=20, n_static=300, n_dyn=0, noise=0.0)
    for win in tracks.windows:  # nothing survives the step 9 -> 10
        rows = win.frame_indices >= 10
        win.visible[rows & (win.frame_indices[0] < 10)] = False
    corr = build_correspondences(tracks, None, cfg)
    assert track_breaks(corr, 40) == [9]
    assert 9 in tracking_breaks(tracks.windows, 20, 0.3)


def test_bridge_matches_link_frames_across_a_break():
    rng = np.random.default_rng(0)
    tex = cv2.GaussianBlur(rng.integers(0, 255, (300, 500), np.uint8), (0, 0), 2)
    frames = np.stack([tex[40:280, 40 + 3 * i : 360 + 3 * i] for i in range(6)] + [tex[40:280, 100:420]] * 2)
    frames = np.repeat(frames[..., None], 3, axis=3)
    corr = sfm.Correspondences(
        np.repeat(np.arange(6), 50), np.tile(np.arange(50), 6), np.zeros((300, 2), np.float32), 8
    )
    pairs = bridge_matches(frames, corr, None, SfmConfig(bridge_span=2))
    assert (5, 6) in pairs and (4, 6) in pairs and (5, 7) in pairs
    xa, xb = pairs[(5, 6)]
    # frame 6 is frame 5 shifted 45 px left: the ratio-tested matches agree on it
    assert np.median(xa[:, 0] - xb[:, 0]) == pytest.approx(45.0, abs=1.0)


def test_tracking_restarts_after_a_break():
    rng = np.random.default_rng(1)
    tex = cv2.GaussianBlur(rng.integers(0, 255, (400, 700), np.uint8), (0, 0), 1.5)
    shifts = [2 * i for i in range(8)] + [200 + 2 * i for i in range(8)]  # a 186 px jump after frame 7
    frames = np.stack([tex[50:290, 20 + s : 340 + s] for s in shifts])
    cfg = TrackConfig(grid=12, stride=5, length=10, restart=True)
    starts = [w.query_frame for w in track_grid(frames, cfg).windows]
    assert 8 in starts and starts == sorted(starts)
    assert 8 not in [w.query_frame for w in track_grid(frames, replace(cfg, restart=False)).windows]
