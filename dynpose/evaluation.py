"""Glue between pose results, the lake's pose tables and ground truth: what the eval products compute.

One row format serves every method (ours and the baselines) so the benchmark compares like with
like: ``pose_row`` / ``pose_from_row``. Ground truth is a synthetic suite's per-clip folder
(docs/synthetic.md): ``cameras.pkl``, ``correspondences.parquet``, ``masks/*.png``, ``meta.json``.
"""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import pickle
import resource
import time
from dataclasses import dataclass

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .camera import Intrinsics, PoseResult
from .lake import filesystem_for
from .metrics.reprojection import video_reprojection_error

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
        ("fx", pa.float64()), ("fy", pa.float64()), ("cx", pa.float64()), ("cy", pa.float64()),
        ("width", pa.int32()), ("height", pa.int32()),
        ("registered_ratio", pa.float64()),
        ("reprojection_error", pa.float64()),
        ("num_points", pa.int64()),
        ("seconds", pa.float64()),
        ("peak_mib", pa.float64()),
        ("stage_seconds", pa.string()),  # JSON {stage: seconds}
    ]
)


def pose_row(video_id: str, method: str, result: PoseResult, frame_index, status: str = "ok", message: str | None = None,
             seconds: float = float("nan"), peak_mib: float = float("nan"), stage_seconds: dict | None = None) -> dict:
    k = result.intrinsics
    return {
        "video_id": video_id, "method": method, "status": status, "message": message,
        "n_frames": len(result.timestamps),
        "frame_index": [int(i) for i in frame_index],
        "timestamp_s": [float(t) for t in result.timestamps],
        "registered": [bool(r) for r in result.registered],
        "pose_w2c": [np.asarray(p, np.float64).reshape(12).tolist() for p in result.poses_w2c],
        "fx": k.fx, "fy": k.fy, "cx": k.cx, "cy": k.cy, "width": k.width, "height": k.height,
        "registered_ratio": result.registered_ratio,
        "reprojection_error": float(result.reprojection_error),
        "num_points": int(result.num_points),
        "seconds": float(seconds), "peak_mib": float(peak_mib),
        "stage_seconds": json.dumps(stage_seconds or {}),
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
    )


def poses_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=POSES_SCHEMA)


@dataclass
class GroundTruth:
    uri: str
    poses: PoseResult
    correspondences: pa.Table | None
    meta: dict

    def masks(self, frame_indices) -> np.ndarray:
        """Dynamic masks (True = dynamic) of the given ground-truth frames."""
        fs, root = filesystem_for(self.uri)
        out = []
        for i in frame_indices:
            data = np.frombuffer(fs.cat_file(f"{root}/masks/{int(i):05d}.png"), np.uint8)
            out.append(cv2.imdecode(data, cv2.IMREAD_UNCHANGED) > 0)
        return np.stack(out)


def load_ground_truth(uri: str) -> GroundTruth:
    fs, root = filesystem_for(uri)
    poses = pickle.loads(fs.cat_file(f"{root}/cameras.pkl"))
    fx, fy, cx, cy = np.asarray(poses["intrinsics"])[0]
    result = PoseResult(
        timestamps=np.asarray(poses["timestamps"]), poses_w2c=np.asarray(poses["poses"]),
        registered=np.asarray(poses["registered"], bool),
        intrinsics=Intrinsics(float(fx), float(fy), float(cx), float(cy), int(poses["width"]), int(poses["height"])),
    )
    corr = None
    if fs.exists(f"{root}/correspondences.parquet"):
        corr = pq.read_table(io.BytesIO(fs.cat_file(f"{root}/correspondences.parquet")))
    meta = json.loads(fs.cat_file(f"{root}/meta.json")) if fs.exists(f"{root}/meta.json") else {}
    return GroundTruth(uri, result, corr, meta)


def correspondences_for(gt: GroundTruth, source_indices) -> dict | None:
    """Ground-truth correspondences between frames the method saw, re-indexed to its frames.

    Ground truth indexes every rendered frame; a method sees the sampled ones (e.g. 12 of 24 fps),
    so only pairs whose both frames were sampled are kept.
    """
    if gt.correspondences is None or not gt.correspondences.num_rows:
        return None
    to_pred = {int(s): i for i, s in enumerate(source_indices)}
    table = gt.correspondences.to_pydict()
    keep = [k for k, (a, b) in enumerate(zip(table["frame_i"], table["frame_j"])) if a in to_pred and b in to_pred]
    if not keep:
        return None
    out = {c: np.asarray(table[c])[keep] for c in ("x_i", "y_i", "x_j", "y_j")}
    out["frame_i"] = np.asarray([to_pred[table["frame_i"][k]] for k in keep])
    out["frame_j"] = np.asarray([to_pred[table["frame_j"][k]] for k in keep])
    return out


def reprojection_error(pred: PoseResult, source_indices, gt: GroundTruth) -> tuple[float, int]:
    """Mean 720p-normalised sqrt-Sampson error of a video and the number of correspondences used."""
    corr = correspondences_for(gt, source_indices)
    if corr is None:
        return float("nan"), 0
    k = gt.poses.intrinsics
    return video_reprojection_error(pred, corr, k.width, k.height), len(corr["x_i"])


def _child(conn, fn, args, kwargs):
    t0 = time.perf_counter()
    try:
        out = ("ok", fn(*args, **kwargs))
    except Exception as exc:  # reported to the parent as a failure of this one task
        out = ("error", f"{type(exc).__name__}: {exc}")
    conn.send((out, time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    conn.close()


# Children fork from a clean forkserver (no Dagster, Ray or LanceDB threads inherited), which has
# imported the heavy libraries once, so each task starts fast.
_PRELOAD = ["dynpose.annotate.stages", "dynpose.baselines.colmap", "dynpose.baselines.identity"]


def _context():
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def run_measured(fn, *args, **kwargs):
    """Run ``fn`` in a child process to measure its own peak memory (MiB) and wall time.

    Returns (status, value_or_message, seconds, peak_mib). The peak is the child's maximum
    resident set, which includes the libraries the forkserver preloaded. A crash of the child
    (native code fault, killed for memory) is a failure of that task, not of the caller.
    """
    ctx = _context()
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args, kwargs))
    t0 = time.perf_counter()
    proc.start()
    child.close()
    try:
        (status, value), seconds, peak = parent.recv()
        proc.join()
    except EOFError:
        proc.join()
        status, value, seconds, peak = "error", f"worker died (exit code {proc.exitcode})", time.perf_counter() - t0, float("nan")
    return status, value, seconds, peak
