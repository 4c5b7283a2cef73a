"""Trajectory accuracy against ground-truth poses: ATE and RPE after Sim(3) alignment (evo).

Protocol (DynPose-100K section 5.1 and appendix C.1, docs/evaluation.md):

- prediction and ground truth are associated by timestamp (``evo.core.sync``);
- the prediction is aligned to the ground truth with Umeyama Sim(3) on camera centres (evo);
- ATE is the RMSE of the aligned camera-centre errors; RPE is evo's relative pose error between
  consecutive associated frames (delta = 1 frame), translation in ground-truth units and rotation
  in degrees, computed on the same aligned prediction;
- a sequence *fails* when fewer than ``min_registered`` of its predicted frames are registered.
  A failed prediction is replaced by identity rotations and uniform random camera centres
  (:func:`fill_failed`, seeded) so it can still be aligned: an identity sequence has no spread and
  cannot be Sim(3)-aligned to anything;
- in a successful sequence, unregistered frames take the pose of the nearest registered frame in
  time (:func:`fill_nearest`), the rule the paper uses for its reprojection benchmark. A method is
  thus charged for the frames it dropped instead of being scored on its easy frames only
  (``unregistered="drop"`` scores registered frames only, for comparison).
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
from evo.core import metrics, sync
from evo.core.geometry import GeometryException
from evo.core.trajectory import PoseTrajectory3D

from dynpose.domain.annotate.decisions import MIN_REGISTERED
from dynpose.domain.camera import PoseResult, invert_pose


def fill_failed(gt: PoseResult, seed: int = 0) -> PoseResult:
    """The paper's failure fill on ``gt``'s frames: identity rotations, camera centres U[0,1)^3."""
    n = len(gt.timestamps)
    centres = np.random.default_rng(seed).uniform(0.0, 1.0, (n, 3))
    poses = np.zeros((n, 3, 4))
    poses[:, :, :3] = np.eye(3)
    poses[:, :, 3] = -centres  # R = I, so t = -R C = -C
    return PoseResult(
        timestamps=np.asarray(gt.timestamps, np.float64).copy(),
        poses_w2c=poses,
        registered=np.ones(n, bool),
        intrinsics=gt.intrinsics,
        extra={"filled": "failure", "seed": seed},
    )


def nearest_registered_index(timestamps: np.ndarray, registered: np.ndarray) -> np.ndarray:
    """For every frame, the index of the registered frame nearest in time (itself if registered)."""
    times = np.asarray(timestamps, np.float64)
    reg = np.flatnonzero(registered)
    if len(reg) == 0:
        raise ValueError("no registered frame")
    gaps = np.abs(times[:, None] - times[reg][None, :])
    return reg[np.argmin(gaps, axis=1)]  # ties go to the earlier frame


def fill_nearest(pred: PoseResult) -> PoseResult:
    """Copy each unregistered frame's pose from the nearest registered frame; all become registered."""
    src = nearest_registered_index(pred.timestamps, pred.registered)
    return replace(
        pred,
        poses_w2c=np.asarray(pred.poses_w2c, np.float64)[src].copy(),
        registered=np.ones(len(src), bool),
        extra={**pred.extra, "filled": "nearest"},
    )


def to_evo(result: PoseResult, only_registered: bool = True) -> PoseTrajectory3D:
    """A PoseResult as an evo trajectory (camera-to-world SE(3), the evo/TUM convention)."""
    keep = np.asarray(result.registered, bool) if only_registered else np.ones(len(result.timestamps), bool)
    mats = []
    for pose in np.asarray(result.poses_w2c, np.float64)[keep]:
        m = np.eye(4)
        m[:3] = invert_pose(pose)
        mats.append(m)
    return PoseTrajectory3D(poses_se3=mats, timestamps=np.asarray(result.timestamps, np.float64)[keep])


def default_max_diff(timestamps: np.ndarray) -> float:
    """Association tolerance: half the median ground-truth frame interval (1 ms floor)."""
    dt = np.diff(np.sort(np.asarray(timestamps, np.float64)))
    dt = dt[dt > 0]
    return max(0.5 * float(np.median(dt)), 1e-3) if len(dt) else 0.01


def align_sim3(pred: PoseResult, gt: PoseResult, max_diff: float | None = None):
    """Associate by time and Sim(3)-align the prediction; returns (gt_traj, aligned_pred_traj, (R, t, s)).

    Raises evo's GeometryException when the prediction is degenerate (e.g. all centres equal).
    """
    ref, est = sync.associate_trajectories(
        to_evo(gt), to_evo(pred), max_diff=default_max_diff(gt.timestamps) if max_diff is None else max_diff
    )
    est = copy.deepcopy(est)
    sim3 = est.align(ref, correct_scale=True)
    return ref, est, sim3


def _errors(ref: PoseTrajectory3D, est: PoseTrajectory3D) -> dict:
    data = (ref, est)
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data(data)
    out = {"ate": ape.get_statistic(metrics.StatisticsType.rmse)}
    for key, relation in (
        ("rpe_t", metrics.PoseRelation.translation_part),
        ("rpe_r", metrics.PoseRelation.rotation_angle_deg),
    ):
        rpe = metrics.RPE(relation, delta=1, delta_unit=metrics.Unit.frames, all_pairs=False)
        rpe.process_data(data)
        # RMSE over consecutive pairs, as evo_rpe reports and the published tables use.
        out[key] = rpe.get_statistic(metrics.StatisticsType.rmse)
    return out


def evaluate_trajectory(
    pred: PoseResult,
    gt: PoseResult,
    min_registered: float = MIN_REGISTERED,
    fill_seed: int = 0,
    unregistered: str = "nearest",
    max_diff: float | None = None,
) -> dict:
    """ATE / RPE of ``pred`` against ``gt`` with the paper's failure handling (module docstring).

    Returns ``ate``, ``rpe_t``, ``rpe_r`` (degrees), ``registered_ratio`` (of the prediction's own
    frames), ``success``, ``n_frames`` (associated pairs evaluated), ``filled`` (``none``,
    ``nearest``, ``failure`` or ``degenerate``) and ``scale`` (the Sim(3) scale applied).
    """
    if unregistered not in ("nearest", "drop"):
        raise ValueError(f"unregistered must be 'nearest' or 'drop', not {unregistered!r}")
    ratio = pred.registered_ratio
    success = ratio >= min_registered
    if not success:
        used, filled = fill_failed(gt, fill_seed), "failure"
    elif unregistered == "nearest" and not np.all(pred.registered):
        used, filled = fill_nearest(pred), "nearest"
    else:
        used, filled = pred, "none"
    try:
        ref, est, (_, _, scale) = align_sim3(used, gt, max_diff)
    except GeometryException:
        # A registered but collapsed trajectory cannot be aligned either: score it as a failure.
        ref, est, (_, _, scale) = align_sim3(fill_failed(gt, fill_seed), gt, max_diff)
        filled = "degenerate"
    return {
        **_errors(ref, est),
        "registered_ratio": ratio,
        "success": bool(success),
        "n_frames": int(ref.num_poses),
        "filled": filled,
        "scale": float(scale),
    }


def summarize_trajectories(per_video: list[dict]) -> dict:
    """Means over videos (failures filled) and over successful videos, plus % registered."""
    out = {
        "n_videos": len(per_video),
        "pct_registered": 100.0 * float(np.mean([r["success"] for r in per_video])) if per_video else float("nan"),
    }
    ok = [r for r in per_video if r["success"]]
    for key in ("ate", "rpe_t", "rpe_r"):
        out[key] = float(np.mean([r[key] for r in per_video])) if per_video else float("nan")
        out[f"{key}_success"] = float(np.mean([r[key] for r in ok])) if ok else float("nan")
    return out
