"""Baseline pose methods: the registry, the identity fill, COLMAP and COLMAP+Mask on a synthetic clip.

The clip is the inside of an open textured box (four textured rectangles, composited with
cv2.warpPerspective) seen by a camera that slides and pans: a rigid, non-planar scene that COLMAP
reconstructs in seconds. A moving textured square plays the dynamic object.
"""

from __future__ import annotations

import types

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dynpose.domain.camera import Intrinsics, PoseResult
from dynpose.domain.video import SampledFrames
from dynpose.evaluation.baselines import available_methods, get_method, register
from dynpose.evaluation.metrics.reprojection import reprojection_errors
from dynpose.evaluation.metrics.trajectory import evaluate_trajectory

# Origin, U, V of textured rectangles: the inside of an open box (convex: no two overlap on screen).
PLANES = [
    ((-3, -3, 6), (6, 0, 0), (0, 4.5, 0)),  # back wall z = 6
    ((-3, 1.5, 1.5), (6, 0, 0), (0, 0, 4.5)),  # floor y = 1.5 (y points down)
    ((-3, -3, 1.5), (0, 0, 4.5), (0, 4.5, 0)),  # left wall x = -3
    ((3, -3, 1.5), (0, 0, 4.5), (0, 4.5, 0)),  # right wall x = 3
]


def texture(rng, size=256) -> np.ndarray:
    """Multi-scale smooth noise: blobs at every scale for SIFT."""
    img = np.zeros((size, size, 3), np.float32)
    for s in (4, 8, 16, 32, 64):
        img += cv2.resize(rng.uniform(0, 1, (s, s, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    img = (img - img.min()) / (img.max() - img.min())
    return (255 * img).astype(np.uint8)


def box_clip(n=8, width=320, height=240, seed=0, dynamic=False):
    """(SampledFrames, ground-truth PoseResult, dynamic masks or None)."""
    rng = np.random.default_rng(seed)
    k = Intrinsics(250.0, 250.0, width / 2, height / 2, width, height)
    textures = [texture(rng) for _ in PLANES]
    mover = texture(rng, 96)
    s = np.linspace(0, 1, n)
    poses, frames, masks = np.zeros((n, 3, 4)), [], []
    for i in range(n):
        centre = np.array([-0.6 + 1.2 * s[i], -0.2 * np.sin(np.pi * s[i]), 0.4 * s[i]])
        c2w = Rotation.from_euler("y", 8 - 16 * s[i], degrees=True).as_matrix()
        rot, trans = c2w.T, -c2w.T @ centre
        poses[i] = np.column_stack([rot, trans])
        img = np.zeros((height, width, 3), np.uint8)
        for (o, u, v), tex in zip(PLANES, textures):
            size = tex.shape[0]
            hmat = k.matrix() @ np.column_stack(
                [rot @ np.array(u) / size, rot @ np.array(v) / size, rot @ np.array(o) + trans]
            )
            warped = cv2.warpPerspective(tex, hmat, (width, height), flags=cv2.INTER_LINEAR)
            inside = (
                cv2.warpPerspective(
                    np.full((size, size), 255, np.uint8), hmat, (width, height), flags=cv2.INTER_NEAREST
                )
                > 0
            )
            img[inside] = warped[inside]
        mask = np.zeros((height, width), bool)
        if dynamic:  # a textured square sliding across the image against the camera motion
            x0, y0 = int((0.7 - 0.5 * s[i]) * width), int(0.3 * height)
            size = min(mover.shape[0], width - x0, height - y0)
            img[y0 : y0 + size, x0 : x0 + size] = mover[:size, :size]
            mask[y0 : y0 + size, x0 : x0 + size] = True
        frames.append(img)
        masks.append(mask)
    times = np.arange(n) / 12.0
    gt = PoseResult(times, poses, np.ones(n, bool), k)
    return SampledFrames(np.stack(frames), times, np.arange(n), 12.0), gt, (np.stack(masks) if dynamic else None)


def path_length(gt: PoseResult) -> float:
    centres = -np.einsum("nji,nj->ni", gt.poses_w2c[:, :, :3], gt.poses_w2c[:, :, 3])
    return float(np.sum(np.linalg.norm(np.diff(centres, axis=0), axis=1)))


# --- registry -----------------------------------------------------------------------------------


def test_registry_lists_and_loads_methods():
    assert {"identity", "colmap", "colmap_mask"} <= set(available_methods())
    for name in ("identity", "colmap", "colmap_mask"):
        method = get_method(name)
        assert method.NAME == name and callable(method.run)
    with pytest.raises(KeyError, match="unknown pose method"):
        get_method("nope")


def test_register_a_new_method():
    sampled, gt, _ = box_clip(n=3, width=64, height=48)
    fake = types.SimpleNamespace(NAME="oracle", run=lambda sampled, dynamic_masks=None, **options: gt)
    register("oracle", fake)
    try:
        assert "oracle" in available_methods() and get_method("oracle").run(sampled) is gt
    finally:
        from dynpose.evaluation.baselines import METHODS

        METHODS.pop("oracle")


# --- identity -----------------------------------------------------------------------------------


def test_identity_baseline_is_the_failure_fill():
    sampled, gt, _ = box_clip(n=6, width=64, height=48)
    out = get_method("identity").run(sampled, seed=7)
    assert out.registered.all() and np.allclose(out.poses_w2c[:, :, :3], np.eye(3))
    assert np.array_equal(out.poses_w2c, get_method("identity").run(sampled, seed=7).poses_w2c)
    assert not np.array_equal(out.poses_w2c, get_method("identity").run(sampled, seed=8).poses_w2c)
    assert out.intrinsics.width == 64 and out.intrinsics.height == 48
    # Evaluating it is evaluating a failed method with the same seed.
    failed = PoseResult(gt.timestamps, gt.poses_w2c, np.zeros(6, bool), gt.intrinsics)
    assert evaluate_trajectory(out, gt)["ate"] == pytest.approx(evaluate_trajectory(failed, gt, fill_seed=7)["ate"])
    # translation="zero": the reprojection benchmark's Identity row, point distances.
    zero = get_method("identity").run(sampled, translation="zero")
    corr = {
        "frame_i": [0, 1],
        "frame_j": [2, 5],
        "x_i": [10.0, 20.0],
        "y_i": [5.0, 5.0],
        "x_j": [13.0, 20.0],
        "y_j": [9.0, 1.0],
    }
    assert np.allclose(reprojection_errors(zero, corr, 64, 48), np.array([5.0, 4.0]) * 720 / 48)
    with pytest.raises(ValueError):
        get_method("identity").run(sampled, translation="sideways")


# --- COLMAP -------------------------------------------------------------------------------------


def test_colmap_registers_a_short_synthetic_clip():
    sampled, gt, _ = box_clip(n=8)
    out = get_method("colmap").run(sampled)
    assert out.registered.all(), out.extra
    assert out.num_points > 100 and out.reprojection_error < 1.0
    assert out.intrinsics.fx == pytest.approx(250.0, rel=0.05)  # self-calibrated focal
    assert out.extra["points3d"].shape == (out.num_points, 3)
    metrics = evaluate_trajectory(out, gt)
    assert metrics["success"] and metrics["ate"] < 0.01 * path_length(gt)
    assert metrics["rpe_r"] < 0.5


def test_colmap_never_raises():
    blank = SampledFrames(np.full((4, 48, 64, 3), 128, np.uint8), np.arange(4) / 12.0, np.arange(4), 12.0)
    out = get_method("colmap").run(blank)
    assert not out.registered.any() and out.extra["reason"]
    one = SampledFrames(blank.frames[:1], blank.timestamps[:1], blank.source_indices[:1], 12.0)
    assert "fewer than 2" in get_method("colmap").run(one).extra["reason"]
    bad = get_method("colmap").run(blank, matcher="sequential", mapper={"no_such_option": 1})
    assert not bad.registered.any() and "reason" in bad.extra


def test_colmap_mask_removes_features_on_dynamic_pixels():
    sampled, _, _ = box_clip(n=4)
    none = get_method("colmap").run(sampled, matcher="exhaustive")
    half = np.zeros((4, 240, 320), bool)
    half[:, :, :160] = True
    masked = get_method("colmap_mask").run(sampled, half, matcher="exhaustive")
    assert masked.extra["method"] == "colmap_mask"
    assert 0 < masked.extra["keypoints_per_image"] < 0.7 * none.extra["keypoints_per_image"]
    everything = get_method("colmap_mask").run(sampled, np.ones((4, 120, 160), bool))  # resized to frames
    assert not everything.registered.any() and everything.extra["keypoints_per_image"] == 0
    assert "needs dynamic_masks" in get_method("colmap_mask").run(sampled).extra["reason"]


@pytest.mark.slow
def test_colmap_mask_beats_colmap_on_a_dynamic_clip():
    # ~30 s: the moving square misleads plain COLMAP (it fails or drifts here), masking fixes it.
    sampled, gt, masks = box_clip(n=16, dynamic=True)
    plain = evaluate_trajectory(get_method("colmap").run(sampled, masks), gt)
    masked_out = get_method("colmap_mask").run(sampled, masks)
    masked = evaluate_trajectory(masked_out, gt)
    assert masked["success"] and masked_out.registered.all(), masked_out.extra
    assert masked["ate"] < 0.01 * path_length(gt)
    assert plain["ate"] > 5 * masked["ate"]
