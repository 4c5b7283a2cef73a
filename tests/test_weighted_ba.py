"""AnyCam's uncertainty-weighted refinement (weighted_ba.py) on exact synthetic geometry."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pycolmap
import pytest

from dynpose.domain.annotate.sfm import run_sfm
from dynpose.domain.annotate.weighted_ba import (
    linear_weights,
    observations,
    uncertainty,
    weighted_bundle_adjustment,
)
from dynpose.evaluation.metrics.trajectory import evaluate_trajectory
from tests.test_sfm import FAST, scene

F, W, H = 500.0, 640, 480


def test_weights_fall_linearly_to_zero_at_the_maximum():
    sigma = uncertainty(
        gamma=np.array([0.0, 1.0, np.nan, 0.5]),
        age=np.array([0, 10, -20, 0]),
        mask_distance=np.array([100.0, 100.0, 100.0, 0.0]),
        drift=0.05,
        mask_px=1.0,
        mask_reach=10.0,
    )
    assert sigma == pytest.approx([0.0, 1.5, 1.0, 1.5])  # NaN gamma counts 0; drift either way in time
    assert linear_weights(sigma, 3.0) == pytest.approx([1.0, 0.5, 2 / 3, 0.5])
    assert linear_weights(np.array([3.0, 7.0]), 3.0).tolist() == [0.0, 0.0]


def _reconstruction(moving: np.ndarray, rng) -> pycolmap.Reconstruction:
    """A sideways walk past 3-D points, observed with 0.5 px noise; ``moving`` points drift along x;
    the camera starts 5% off in focal, the poses and points slightly off."""
    n = 12
    X = rng.uniform([-3, -2, 4], [3, 2, 9], (len(moving), 3))
    truth = pycolmap.Camera(model="SIMPLE_PINHOLE", width=W, height=H, params=[F, W / 2, H / 2], camera_id=1)
    rec = pycolmap.Reconstruction()
    rec.add_camera_with_trivial_rig(
        pycolmap.Camera(model="SIMPLE_PINHOLE", width=W, height=H, params=[1.05 * F, W / 2, H / 2], camera_id=1)
    )
    for i in range(n):
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(np.array([0, 0.02 * i, 0])), np.array([-0.1 * i, 0, 0]))
        Xi = X + np.outer(moving, [0.05 * i, 0, 0])
        xy = truth.img_from_cam(Xi @ pose.matrix()[:, :3].T + pose.matrix()[:, 3]) + rng.normal(
            0, 0.5, Xi.shape[:1] + (2,)
        )
        jitter = rng.normal(0, 0.01, 6) if i else np.zeros(6)
        start = pycolmap.Rigid3d(
            pycolmap.Rotation3d(np.array([0, 0.02 * i, 0]) + jitter[:3]), np.array([-0.1 * i, 0, 0]) + jitter[3:]
        )
        rec.add_image_with_trivial_frame(
            pycolmap.Image(name=f"{i:06d}", keypoints=xy, camera_id=1, image_id=i + 1), start
        )
        for k in range(len(X)):
            if i == 0:
                rec.add_point3D(X[k] + rng.normal(0, 0.05, 3), pycolmap.Track())
            rec.add_observation(k + 1, pycolmap.TrackElement(i + 1, k))
    return rec


def test_zero_weights_remove_the_movers_and_the_focal_comes_back():
    moving = np.arange(200) < 30
    focal = {}
    for label in ("equal", "movers ignored"):
        rec = _reconstruction(moving, np.random.default_rng(0))
        obs = observations(rec)
        assert len(obs.image) == 12 * 200
        on_mover = moving[np.asarray(obs.point_ids)[obs.point] - 1]
        weights = np.ones(len(obs.image)) if label == "equal" else np.where(on_mover, 0.0, 1.0)
        summary = weighted_bundle_adjustment(rec, obs, weights, max_nfev=30)
        assert summary["rms_after_px"] < summary["rms_before_px"]
        focal[label] = rec.cameras[1].params[0] / F - 1
        if label == "movers ignored":
            assert summary["ignored_observations"] == 12 * 30
            assert rec.compute_num_observations() == 12 * 170 and rec.num_points3D() == 170
            assert summary["rms_after_px"] < 0.8  # the noise alone: 0.5 px per axis
    assert abs(focal["movers ignored"]) < 0.02 < abs(focal["equal"])


def test_run_sfm_weighted_refinement_keeps_a_good_model():
    tracks, masks, gt = scene(n_static=600, n_dyn=60, noise=0.3)
    res = run_sfm(tracks, masks, gt.timestamps, replace(FAST, weighted_refine=True))
    summary = res.extra["stats"]["weighted_refine"]
    assert summary["observations"] > 1000 and 0 < summary["mean_weight"] < 1
    assert len(res.extra["track_gamma"]) == len(tracks.windows) and res.registered.all()
    assert evaluate_trajectory(res, gt)["ate"] < 0.05
