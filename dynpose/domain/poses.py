"""The pose table: one row format for every method's poses (ours, the baselines), so products and
benchmarks compare like with like (``pose_row`` / ``pose_from_row``)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from dynpose.domain.camera import Intrinsics, PoseResult

POSES_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("method", pa.string()),
        ("status", pa.string()),  # ok | a named failure (sfm_failed, too_few_frames, ...)
        ("message", pa.string()),
        ("n_frames", pa.int32()),
        ("frame_index", pa.list_(pa.int32())),  # source frame index of every sampled frame
        ("timestamp_s", pa.list_(pa.float64())),
        ("registered", pa.list_(pa.bool_())),
        ("pose_w2c", pa.list_(pa.list_(pa.float64(), 12))),  # row-major 3x4 world-to-camera
        ("fx", pa.float64()),
        ("fy", pa.float64()),
        ("cx", pa.float64()),
        ("cy", pa.float64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("registered_ratio", pa.float64()),
        ("reprojection_error", pa.float64()),
        ("num_points", pa.int64()),
        ("seconds", pa.float64()),
        ("peak_mib", pa.float64()),
        ("stage_seconds", pa.string()),  # JSON {stage: seconds}
        # ours only (null for baselines): InterPose self-consistency of the kept hypothesis (degrees,
        # lower = more consistent), its focal initialisation, and TracksTo4D's per-point motion level
        # (px) of every tracklet window, when camera_poses.motion_level is on
        ("self_consistency", pa.float64()),
        ("focal_init", pa.string()),
        ("track_gamma", pa.list_(pa.list_(pa.float32()))),
    ]
)


def pose_row(
    video_id: str,
    method: str,
    result: PoseResult,
    frame_index,
    status: str = "ok",
    message: str | None = None,
    seconds: float = float("nan"),
    peak_mib: float = float("nan"),
    stage_seconds: dict | None = None,
) -> dict:
    k = result.intrinsics
    return {
        "video_id": video_id,
        "method": method,
        "status": status,
        "message": message,
        "n_frames": len(result.timestamps),
        "frame_index": [int(i) for i in frame_index],
        "timestamp_s": [float(t) for t in result.timestamps],
        "registered": [bool(r) for r in result.registered],
        "pose_w2c": [np.asarray(p, np.float64).reshape(12).tolist() for p in result.poses_w2c],
        "fx": k.fx,
        "fy": k.fy,
        "cx": k.cx,
        "cy": k.cy,
        "width": k.width,
        "height": k.height,
        "registered_ratio": result.registered_ratio,
        "reprojection_error": float(result.reprojection_error),
        "num_points": int(result.num_points),
        "seconds": float(seconds),
        "peak_mib": float(peak_mib),
        "stage_seconds": json.dumps(stage_seconds or {}),
        "self_consistency": result.extra.get("self_consistency"),
        "focal_init": result.extra.get("focal_init"),
        "track_gamma": [np.asarray(g, np.float32).tolist() for g in result.extra["track_gamma"]]
        if "track_gamma" in result.extra
        else None,
    }


def pose_from_row(row: dict) -> PoseResult:
    n = row["n_frames"]
    poses = np.asarray(row["pose_w2c"], np.float64).reshape(n, 3, 4) if n else np.zeros((0, 3, 4))
    return PoseResult(
        timestamps=np.asarray(row["timestamp_s"], np.float64),
        poses_w2c=poses,
        registered=np.asarray(row["registered"], bool),
        intrinsics=Intrinsics(row["fx"], row["fy"], row["cx"], row["cy"], row["width"], row["height"]),
        reprojection_error=row["reprojection_error"],
        num_points=row["num_points"],
        extra={"self_consistency": row["self_consistency"]} if row.get("self_consistency") is not None else {},
    )


def poses_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=POSES_SCHEMA)
