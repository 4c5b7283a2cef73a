"""Ground truth of a synthetic suite's clip, and the reprojection error of a method against it.

Ground truth is a per-clip folder (docs/synthetic.md): ``cameras.pkl``,
``correspondences.parquet``, ``masks/*.png``, ``meta.json``.
"""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dynpose.domain.annotate.masks_vlm import boxes_from_ids
from dynpose.domain.camera import Intrinsics, PoseResult
from dynpose.evaluation.metrics.reprojection import video_reprojection_error
from dynpose.storage.lake import filesystem_for


@dataclass
class GroundTruth:
    uri: str
    poses: PoseResult
    correspondences: pa.Table | None
    meta: dict

    def object_ids(self, frame: int) -> np.ndarray:
        """(H, W) object ids of a ground-truth frame, 0 = static."""
        fs, root = filesystem_for(self.uri)
        data = np.frombuffer(fs.cat_file(f"{root}/masks/{int(frame):05d}.png"), np.uint8)
        return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)

    def on_object(self, frame: int, xy: np.ndarray, width: int, height: int) -> np.ndarray:
        """(M,) bool: whether each point ``xy`` (M, 2), in pixels of a ``width`` x ``height`` image of
        ground-truth frame ``frame``, falls on an object (the dynamic class: moving or standing still)."""
        return self.object_at(frame, xy, width, height) > 0

    def object_at(self, frame: int, xy: np.ndarray, width: int, height: int) -> np.ndarray:
        """(M,) the object id under each point (0: static scene); arguments as :meth:`on_object`."""
        ids = self.object_ids(frame)
        k = self.poses.intrinsics
        sx, sy = k.width / width, k.height / height
        xy = np.asarray(xy, np.float64)
        # pixel centres at integers: x maps to (x + 0.5) * s - 0.5, as Intrinsics.scaled does
        x = np.clip(np.round((xy[:, 0] + 0.5) * sx - 0.5).astype(int), 0, ids.shape[1] - 1)
        y = np.clip(np.round((xy[:, 1] + 0.5) * sy - 0.5).astype(int), 0, ids.shape[0] - 1)
        return ids[y, x]

    def object_speeds(self, frame: int, seconds: float = 0.5) -> dict[int, float]:
        """Speed (scene units, metres, per second) of each object over ``seconds`` either side of
        ``frame``, from the generator's object centres (``meta.json`` ``object_centres``).

        A person standing still is an object (the masks' dynamic class) with speed 0: no motion
        cue can find it. Empty for a suite rendered before the centres were written."""
        centres = self.meta.get("object_centres")
        if not centres:
            return {}
        ts = np.asarray(self.meta.get("scene_times") or self.poses.timestamps)  # a frame-drop suite's scene time
        a = int(np.searchsorted(ts, ts[frame] - seconds))
        b = min(int(np.searchsorted(ts, ts[frame] + seconds)), len(ts) - 1)
        if b <= a:
            return {}
        return {
            int(oid): float(np.linalg.norm(np.subtract(c[b], c[a])) / (ts[b] - ts[a])) for oid, c in centres.items()
        }

    def masks(self, frame_indices) -> np.ndarray:
        """Dynamic masks (True = dynamic) of the given ground-truth frames."""
        return np.stack([self.object_ids(i) > 0 for i in frame_indices])

    def objects(self, frame: int) -> list[dict]:
        """What a perfect DynaPo VLM answers for a frame: every dynamic object's label and 0-1000 box."""
        boxes = boxes_from_ids(self.object_ids(frame), self.meta.get("object_kinds"))
        return [{"label": o.label, "box": list(o.box)} for o in boxes]


def load_ground_truth(uri: str) -> GroundTruth:
    fs, root = filesystem_for(uri)
    poses = pickle.loads(fs.cat_file(f"{root}/cameras.pkl"))
    fx, fy, cx, cy = np.asarray(poses["intrinsics"])[0]
    result = PoseResult(
        timestamps=np.asarray(poses["timestamps"]),
        poses_w2c=np.asarray(poses["poses"]),
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
