"""Evaluation metrics: trajectories (against evo), Sampson reprojection, PR/AP, dataset stats, plots."""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest
from evo import main_ape, main_rpe
from evo.core import sync
from evo.core.metrics import PoseRelation, Unit
from evo.tools import file_interface
from scipy.spatial.transform import Rotation

from dynpose.domain.camera import Intrinsics, PoseResult, camera_centers, invert_pose, write_tum
from dynpose.evaluation.metrics import dataset_stats, plots
from dynpose.evaluation.metrics import precision_recall as pr
from dynpose.evaluation.metrics import reprojection as rp
from dynpose.evaluation.metrics import trajectory as tr

K = Intrinsics(500.0, 500.0, 320.0, 180.0, 640, 360)


def random_trajectory(n=40, seed=0) -> PoseResult:
    """A smooth, non-planar camera path with turning cameras (world-to-camera poses)."""
    rng = np.random.default_rng(seed)
    s = np.linspace(0, 1, n)
    centres = np.stack([2 * np.sin(3 * s), 0.5 * np.cos(5 * s), 3 * s], 1) + rng.normal(0, 0.01, (n, 3))
    rotvec = np.stack([0.2 * np.sin(4 * s), 0.6 * s, 0.1 * np.cos(2 * s)], 1)
    poses = np.empty((n, 3, 4))
    for i in range(n):
        c2w = np.column_stack([Rotation.from_rotvec(rotvec[i]).as_matrix(), centres[i]])
        poses[i] = invert_pose(c2w)
    return PoseResult(np.arange(n) / 12.0, poses, np.ones(n, bool), K)


def sim3_of(result: PoseResult, scale: float, rot: np.ndarray, trans: np.ndarray) -> PoseResult:
    """The same cameras in a world moved by X' = s R X + t."""
    poses = np.empty_like(result.poses_w2c)
    for i, pose in enumerate(result.poses_w2c):
        c2w = invert_pose(pose)
        poses[i] = invert_pose(np.column_stack([rot @ c2w[:, :3], scale * rot @ c2w[:, 3] + trans]))
    return PoseResult(result.timestamps.copy(), poses, result.registered.copy(), result.intrinsics)


def perturb(result: PoseResult, rot_deg: float, trans: float, seed=1) -> PoseResult:
    rng = np.random.default_rng(seed)
    poses = result.poses_w2c.copy()
    for pose in poses:
        noise = Rotation.from_rotvec(np.radians(rot_deg) * rng.normal(size=3) / np.sqrt(3)).as_matrix()
        pose[:, :3] = noise @ pose[:, :3]
        pose[:, 3] = noise @ pose[:, 3] + trans * rng.normal(size=3)
    return PoseResult(result.timestamps.copy(), poses, result.registered.copy(), result.intrinsics)


def evo_reference(pred: PoseResult, gt: PoseResult, tmp_path) -> tuple[float, float, float]:
    """ATE / RPE computed the way published tables do: TUM files, evo main_ape / main_rpe."""
    write_tum(tmp_path / "gt.txt", gt.timestamps, gt.poses_w2c, gt.registered)
    write_tum(tmp_path / "pred.txt", pred.timestamps, pred.poses_w2c, pred.registered)
    ref = file_interface.read_tum_trajectory_file(str(tmp_path / "gt.txt"))
    est = file_interface.read_tum_trajectory_file(str(tmp_path / "pred.txt"))
    ref, est = sync.associate_trajectories(ref, est, max_diff=0.02)
    ate = main_ape.ape(ref, copy.deepcopy(est), PoseRelation.translation_part, align=True, correct_scale=True).stats[
        "rmse"
    ]
    kw = dict(align=True, correct_scale=True, delta=1, delta_unit=Unit.frames, all_pairs=True)
    rpe_t = main_rpe.rpe(ref, copy.deepcopy(est), PoseRelation.translation_part, **kw).stats["rmse"]
    rpe_r = main_rpe.rpe(ref, copy.deepcopy(est), PoseRelation.rotation_angle_deg, **kw).stats["rmse"]
    return ate, rpe_t, rpe_r


# --- trajectories -------------------------------------------------------------------------------


def test_known_sim3_gives_zero_error():
    gt = random_trajectory()
    rot = Rotation.from_euler("xyz", [30, -50, 120], degrees=True).as_matrix()
    pred = sim3_of(gt, 0.37, rot, np.array([5.0, -2.0, 1.0]))
    out = tr.evaluate_trajectory(pred, gt)
    assert out["ate"] < 1e-9 and out["rpe_t"] < 1e-9 and out["rpe_r"] < 1e-6
    assert out["scale"] == pytest.approx(1 / 0.37, rel=1e-9)
    assert out["success"] and out["filled"] == "none" and out["n_frames"] == 40


def test_noisy_prediction_matches_evo(tmp_path):
    gt = random_trajectory()
    rot = Rotation.from_euler("zyx", [10, 20, 30], degrees=True).as_matrix()
    pred = perturb(sim3_of(gt, 2.5, rot, np.array([1.0, 2.0, 3.0])), rot_deg=1.0, trans=0.05)
    out = tr.evaluate_trajectory(pred, gt)
    ate, rpe_t, rpe_r = evo_reference(pred, gt, tmp_path)
    assert out["ate"] > 1e-3
    assert out["ate"] == pytest.approx(ate, abs=1e-6)
    assert out["rpe_t"] == pytest.approx(rpe_t, abs=1e-6)
    assert out["rpe_r"] == pytest.approx(rpe_r, abs=1e-6)


def test_association_tolerates_jitter_and_extra_frames():
    gt = random_trajectory()
    pred = perturb(gt, 0.5, 0.02)
    pred.timestamps = pred.timestamps + 0.004  # a few ms off, well inside half a frame
    direct = tr.evaluate_trajectory(perturb(gt, 0.5, 0.02), gt)
    out = tr.evaluate_trajectory(pred, gt)
    assert out["n_frames"] == 40 and out["ate"] == pytest.approx(direct["ate"], abs=1e-12)
    sub = PoseResult(gt.timestamps[::2], gt.poses_w2c[::2], gt.registered[::2], K)  # sparser gt
    assert tr.evaluate_trajectory(pred, sub)["n_frames"] == 20


def test_failed_sequence_is_filled_and_scores_badly():
    gt = random_trajectory()
    pred = perturb(gt, 0.5, 0.02)
    good = tr.evaluate_trajectory(pred, gt)
    pred.registered[::2] = False  # 50% registered < 80%
    out = tr.evaluate_trajectory(pred, gt, fill_seed=3)
    assert not out["success"] and out["filled"] == "failure" and out["registered_ratio"] == 0.5
    assert out["ate"] > 20 * good["ate"]
    same = tr.evaluate_trajectory(tr.fill_failed(gt, seed=3), gt)  # the fill itself, evaluated
    assert out["ate"] == pytest.approx(same["ate"], abs=1e-12)
    assert tr.evaluate_trajectory(pred, gt, fill_seed=4)["ate"] != pytest.approx(out["ate"])
    filled = tr.fill_failed(gt, seed=3)
    assert np.allclose(filled.poses_w2c[:, :, :3], np.eye(3)) and filled.registered.all()


def test_partially_registered_sequence_nearest_fill_and_drop(tmp_path):
    gt = random_trajectory()
    pred = perturb(gt, 0.5, 0.02)
    pred.registered[[5, 6, 30]] = False  # 92.5% registered: a success
    pred.poses_w2c[[5, 6, 30]] = np.nan  # rows of unregistered frames are undefined
    filled = tr.fill_nearest(pred)
    assert np.array_equal(filled.poses_w2c[5], pred.poses_w2c[4]) and np.array_equal(
        filled.poses_w2c[6], pred.poses_w2c[7]
    )
    out = tr.evaluate_trajectory(pred, gt)
    assert out["success"] and out["filled"] == "nearest" and out["n_frames"] == 40
    assert out["ate"] == pytest.approx(evo_reference(filled, gt, tmp_path)[0], abs=1e-6)
    drop = tr.evaluate_trajectory(pred, gt, unregistered="drop")
    assert drop["n_frames"] == 37
    with pytest.raises(ValueError):
        tr.evaluate_trajectory(pred, gt, unregistered="interpolate")
    assert drop["ate"] == pytest.approx(evo_reference(pred, gt, tmp_path)[0], abs=1e-6)


def test_collapsed_prediction_is_scored_as_failure():
    gt = random_trajectory()
    pred = PoseResult(gt.timestamps, np.tile(np.eye(3, 4), (40, 1, 1)), np.ones(40, bool), K)
    out = tr.evaluate_trajectory(pred, gt)
    assert out["success"] and out["filled"] == "degenerate"
    assert out["ate"] == pytest.approx(tr.evaluate_trajectory(tr.fill_failed(gt), gt)["ate"])


def test_summarize_trajectories():
    rows = [
        {"ate": 1.0, "rpe_t": 0.1, "rpe_r": 1.0, "success": True},
        {"ate": 3.0, "rpe_t": 0.3, "rpe_r": 3.0, "success": False},
    ]
    out = tr.summarize_trajectories(rows)
    assert out["ate"] == 2.0 and out["ate_success"] == 1.0 and out["pct_registered"] == 50.0


# --- reprojection -------------------------------------------------------------------------------


def correspondences(gt: PoseResult, width: int, height: int, n_pairs=30, per_pair=8, seed=0) -> dict:
    """Ground-truth matches: random 3-D points seen by both cameras, projected through gt poses."""
    rng = np.random.default_rng(seed)
    kmat = gt.intrinsics.scaled(width, height).matrix()
    cols = {k: [] for k in ("frame_i", "frame_j", "x_i", "y_i", "x_j", "y_j")}
    n = len(gt.timestamps)
    for _ in range(n_pairs):
        i = int(rng.integers(0, n - 6))
        j = i + int(rng.integers(1, 6))
        # Points 2-6 units in front of camera i, inside its image.
        pix = rng.uniform([0.1 * width, 0.1 * height], [0.9 * width, 0.9 * height], (per_pair, 2))
        depth = rng.uniform(2, 6, per_pair)
        cam_i = (np.linalg.inv(kmat) @ np.c_[pix, np.ones(per_pair)].T).T * depth[:, None]
        world = (invert_pose(gt.poses_w2c[i])[:, :3] @ cam_i.T).T + invert_pose(gt.poses_w2c[i])[:, 3]
        cam_j = (gt.poses_w2c[j][:, :3] @ world.T).T + gt.poses_w2c[j][:, 3]
        proj = (kmat @ cam_j.T).T
        pix_j = proj[:, :2] / proj[:, 2:]
        for a in range(per_pair):
            for key, val in zip(cols, (i, j, *pix[a], *pix_j[a])):
                cols[key].append(val)
    return {k: np.asarray(v) for k, v in cols.items()}


def test_sampson_distance_matches_opencv():
    rng = np.random.default_rng(0)
    fmat = rng.normal(size=(3, 3))
    x_i, x_j = rng.uniform(0, 500, (20, 2)), rng.uniform(0, 500, (20, 2))
    ours = rp.sampson_distance(np.broadcast_to(fmat, (20, 3, 3)), x_i, x_j)
    ref = [
        np.sqrt(cv2.sampsonDistance(np.r_[a, 1.0].reshape(3, 1), np.r_[b, 1.0].reshape(3, 1), fmat))
        for a, b in zip(x_i, x_j)
    ]
    assert np.allclose(ours, ref, rtol=1e-9)


def test_ground_truth_poses_give_zero_and_noise_grows():
    gt = random_trajectory(seed=2)
    corr = correspondences(gt, 1280, 720)
    assert np.max(rp.reprojection_errors(gt, corr, 1280, 720)) < 1e-6
    means = []
    for noise in (0.05, 0.2, 0.8, 3.0):
        means.append(
            np.mean(
                [rp.video_reprojection_error(perturb(gt, noise, noise / 50, seed=s), corr, 1280, 720) for s in range(4)]
            )
        )
    assert means[0] > 1e-3 and all(a < b for a, b in zip(means, means[1:]))


def test_errors_are_720p_normalised():
    gt = random_trajectory(seed=2)
    pred = perturb(gt, 0.5, 0.01)
    corr_720 = correspondences(gt, 1280, 720)
    # Halving the resolution moves pixel centre x to (x + 0.5) / 2 - 0.5 (integer pixel centres, as Intrinsics.scaled).
    corr_360 = {k: ((v + 0.5) / 2 - 0.5 if k.startswith(("x", "y")) else v) for k, v in corr_720.items()}
    e720 = rp.reprojection_errors(pred, corr_720, 1280, 720)
    assert np.allclose(rp.reprojection_errors(pred, corr_360, 640, 360), e720, rtol=1e-9)
    # ... and the raw Sampson distance at 640x360 is half the reported number.
    rot, trans = rp.relative_pose(pred.poses_w2c[corr_360["frame_i"][0]], pred.poses_w2c[corr_360["frame_j"][0]])
    kmat = K.scaled(640, 360).matrix()
    raw = rp.sampson_distance(
        rp.fundamental_matrix(rot, trans, kmat, kmat),
        np.array([corr_360["x_i"][0], corr_360["y_i"][0]]),
        np.array([corr_360["x_j"][0], corr_360["y_j"][0]]),
    )
    assert e720[0] == pytest.approx(2 * raw, rel=1e-9)


def test_identity_fallback_is_point_distance():
    gt = random_trajectory(seed=2)
    corr = correspondences(gt, 1280, 720)
    point_dist = np.hypot(corr["x_j"] - corr["x_i"], corr["y_j"] - corr["y_i"])
    failed = PoseResult(gt.timestamps, np.full_like(gt.poses_w2c, np.nan), np.zeros(40, bool), K)
    assert np.allclose(rp.reprojection_errors(failed, corr, 1280, 720), point_dist, rtol=1e-12)
    # Both frames of a pair filled from the same registered frame: identity relative pose too.
    pred = copy.deepcopy(gt)
    pred.registered[1:] = False
    assert np.allclose(rp.reprojection_errors(pred, corr, 1280, 720), point_dist, rtol=1e-9)
    # Half resolution: the same pixels mean twice the 720p distance.
    assert np.allclose(rp.reprojection_errors(failed, corr, 2560, 1440), point_dist / 2)


def test_pure_rotation_uses_rotation_transfer():
    gt = random_trajectory(seed=2)
    pred = copy.deepcopy(gt)
    pred.poses_w2c[:, :, 3] = 0.0  # cameras rotate about one centre: F vanishes
    corr = correspondences(gt, 1280, 720)
    err = rp.reprojection_errors(pred, corr, 1280, 720)
    assert np.all(np.isfinite(err)) and np.mean(err) > 1.0


def test_table_types_and_time_columns():
    pa, pl, pd = pytest.importorskip("pyarrow"), pytest.importorskip("polars"), pytest.importorskip("pandas")
    gt = random_trajectory(seed=2)
    pred = perturb(gt, 0.5, 0.01)
    corr = correspondences(gt, 1280, 720)
    ref = rp.reprojection_errors(pred, corr, 1280, 720)
    for table in (pa.table(corr), pl.DataFrame(corr), pd.DataFrame(corr)):
        assert np.allclose(rp.reprojection_errors(pred, table, 1280, 720), ref)
    timed = {k: v for k, v in corr.items() if not k.startswith("frame")}
    timed["t_i"], timed["t_j"] = gt.timestamps[corr["frame_i"]] + 0.01, gt.timestamps[corr["frame_j"]] - 0.01
    assert np.allclose(rp.reprojection_errors(pred, timed, 1280, 720), ref)


def test_summarize_reprojection():
    out = rp.summarize_reprojection([1.0, 4.9, 7.0, 12.0, 40.0])
    assert out == {
        "n_videos": 5,
        "mean": pytest.approx(12.98),
        "pct_under_5": 40.0,
        "pct_under_10": 60.0,
        "pct_under_30": 80.0,
    }


# --- precision / recall -------------------------------------------------------------------------


def reference_voc_ap(scores, labels) -> float:
    """VOC devkit loop on a ranking (no tied scores in the callers' data)."""
    order = np.argsort(-np.asarray(scores))
    y = np.asarray(labels)[order]
    tp, fp = np.cumsum(y), np.cumsum(1 - y)
    rec, prec = tp / y.sum(), tp / (tp + fp)
    mrec, mpre = [0.0, *rec, 1.0], [0.0, *prec, 0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])


def test_pr_hand_example():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    labels = [1, 0, 1, 1, 0, 0]
    curve = pr.precision_recall_curve(scores, labels)
    assert np.allclose(curve.precision, [1, 1 / 2, 2 / 3, 3 / 4, 3 / 5, 1 / 2])
    assert np.allclose(curve.recall, [1 / 3, 1 / 3, 2 / 3, 1, 1, 1])
    assert np.allclose(pr.smoothed_precision(curve.precision, curve.recall), [1, 1, 3 / 4, 3 / 4, 3 / 4, 3 / 4])
    # AP = 1/3 * 1 + 1/3 * 3/4 + 1/3 * 3/4
    assert pr.average_precision(scores, labels) == pytest.approx(5 / 6)
    assert pr.precision_at_recall(scores, labels, 0.40) == (pytest.approx(2 / 3), 0.7)
    out = pr.evaluate_filter(scores, labels)
    assert out["n_positive"] == 3 and out["precision_at_recall"] == pytest.approx(2 / 3)


def test_pr_ties_enter_together():
    curve = pr.precision_recall_curve([0.5, 0.5, 0.5, 0.1], [1, 0, 0, 1])
    assert np.allclose(curve.thresholds, [0.5, 0.1]) and np.allclose(curve.precision, [1 / 3, 1 / 2])
    assert pr.average_precision([0.5, 0.5], [1, 0]) == pytest.approx(0.5)


def test_ap_matches_reference_on_random_data():
    rng = np.random.default_rng(0)
    for _ in range(5):
        labels = rng.random(200) < 0.1
        scores = rng.random(200) + 0.5 * labels
        assert pr.average_precision(scores, labels) == pytest.approx(
            reference_voc_ap(scores, labels.astype(int)), abs=1e-12
        )
    assert pr.average_precision(np.arange(10), np.arange(10) >= 7) == pytest.approx(1.0)
    assert np.isnan(pr.average_precision([0.1, 0.2], [0, 0]))


# --- dataset statistics -------------------------------------------------------------------------


def poses_from_yaw_pitch(yaws, pitches) -> np.ndarray:
    """World-to-camera poses of a camera panning (about -y, up) and tilting (about x) in place."""
    poses = np.zeros((len(yaws), 3, 4))
    for i, (yaw, pitch) in enumerate(zip(yaws, pitches)):
        # Intrinsic: pan right by yaw about y, then tilt up by pitch about the new x (+x-rotation lifts +z to -y, up).
        c2w = Rotation.from_euler("YX", [yaw, pitch], degrees=True).as_matrix()
        poses[i, :, :3] = c2w.T
    return poses


def test_rotation_statistics_pan_and_tilt():
    base = Rotation.from_euler("xyz", [20, 40, -10], degrees=True).as_matrix()  # arbitrary world
    yaws = np.r_[np.linspace(0, 60, 7), np.linspace(50, -30, 9)]
    poses = poses_from_yaw_pitch(yaws, np.zeros(16))
    poses[:, :, :3] = poses[:, :, :3] @ base.T  # express in a rotated world: nothing changes
    stats = dataset_stats.rotation_statistics(poses)
    assert stats["final_yaw_deg"] == pytest.approx(-30)
    assert stats["sum_abs_yaw_deg"] == pytest.approx(60 + 90)
    assert abs(stats["final_pitch_deg"]) < 1e-9
    tilt = dataset_stats.rotation_statistics(poses_from_yaw_pitch(np.zeros(5), [0, 5, 10, 15, 20]))
    assert tilt["final_pitch_deg"] == pytest.approx(20) and tilt["sum_abs_pitch_deg"] == pytest.approx(20)
    full_turn = dataset_stats.rotation_statistics(poses_from_yaw_pitch(np.linspace(0, 400, 41), np.zeros(41)))
    assert full_turn["final_yaw_deg"] == pytest.approx(400)


def test_rotation_statistics_skip_unregistered_and_lengths():
    poses = poses_from_yaw_pitch([0, 10, 999, 20], [0, 0, 0, 0])
    stats = dataset_stats.rotation_statistics(poses, registered=np.array([1, 1, 0, 1], bool))
    assert stats["final_yaw_deg"] == pytest.approx(20) and stats["sum_abs_yaw_deg"] == pytest.approx(20)
    assert dataset_stats.video_length(np.arange(24) / 12.0) == pytest.approx(2.0)
    result = PoseResult(
        np.arange(24) / 12.0, poses_from_yaw_pitch(np.linspace(0, 30, 24), np.zeros(24)), np.ones(24, bool), K
    )
    row = dataset_stats.pose_statistics(result)
    assert row["length_s"] == pytest.approx(2.0) and row["final_yaw_deg"] == pytest.approx(30)


def test_mask_area_stats():
    cov = np.r_[np.zeros(9), 1.0]
    assert dataset_stats.mask_area_stats(cov) == {"mean": pytest.approx(0.1), "p90": pytest.approx(0.1)}
    masks = np.zeros((4, 10, 10), bool)
    masks[:, :5] = True
    assert dataset_stats.mask_area_stats(masks)["mean"] == pytest.approx(0.5)


# --- plots --------------------------------------------------------------------------------------


def _png_shape(data: bytes):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape


def test_plots_are_small_pngs(tmp_path):
    gt = random_trajectory()
    failed = PoseResult(gt.timestamps, gt.poses_w2c, np.zeros(40, bool), K)
    png = plots.plot_trajectories(
        gt,
        {"noisy": perturb(gt, 1, 0.05), "scaled": sim3_of(gt, 2, np.eye(3), np.ones(3)), "failed": failed},
        path=tmp_path / "traj.png",
    )
    assert _png_shape(png) == (600, 800, 3) and (tmp_path / "traj.png").read_bytes() == png
    rng = np.random.default_rng(0)
    assert _png_shape(plots.plot_histograms({"a": rng.random(50), "b": rng.random(30) * 10}, "error (px)", log_x=True))[
        :2
    ] == (600, 800)
    assert _png_shape(
        plots.plot_pr_curves(
            {"f1": (rng.random(40), rng.random(40) < 0.3), "f2": (rng.random(40), rng.random(40) < 0.3)}
        )
    )[:2] == (600, 800)
    rows = [dataset_stats.rotation_statistics(perturb(gt, 5, 0.1, seed=s).poses_w2c) for s in range(5)]
    assert _png_shape(plots.plot_rotation_statistics(rows))[:2] == (600, 800)
    assert centres_unchanged(gt)


def centres_unchanged(gt):
    """Plotting must not modify its inputs."""
    return np.allclose(camera_centers(gt.poses_w2c), camera_centers(random_trajectory().poses_w2c))
