"""Camera conventions and the pose file formats every part of dynpose reads and writes.

Conventions (docs/DESIGN.md section 8):
- poses are world-to-camera ``[R|t]`` 3x4 float64 in OpenCV axes (x right, y down, z forward);
- intrinsics are ``fx, fy, cx, cy`` in pixels of the stored resolution, with that resolution, in
  the OpenCV pixel convention: pixel centres at integer coordinates, so the image centre is
  ``((W - 1) / 2, (H - 1) / 2)`` (COLMAP puts pixel centres at +0.5: ``dynpose.domain.colmap_io``
  converts at that boundary); the synthetic ground truth uses the same convention;
- times are seconds; unregistered frames are normal and carry ``registered=False``.

Files:
- TUM trajectory: one line per registered frame ``t tx ty tz qx qy qz qw`` where the pose is
  camera-to-world (the TUM / evo convention);
- ``cameras.pkl`` (DynPose-100K style): a dict with ``poses`` (N x 3 x 4 world-to-camera),
  ``intrinsics`` (N x 4 fx, fy, cx, cy), ``width``, ``height``, ``timestamps`` (N) and
  ``registered`` (N bool).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

PRIOR_FOCAL_FACTOR = 1.2  # COLMAP's prior focal: 1.2 x the long side (about a 45 degree FOV)


def prior_focal(width: int, height: int) -> float:
    """COLMAP's prior focal in pixels: what every method assumes before any calibration."""
    return float(PRIOR_FOCAL_FACTOR * max(width, height))


def image_centre(width: int, height: int) -> tuple[float, float]:
    """The image centre in our pixel convention (pixel centres at integers)."""
    return (width - 1) / 2.0, (height - 1) / 2.0


@dataclass(frozen=True)
class Intrinsics:
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def scaled(self, width: int, height: int) -> "Intrinsics":
        """The same camera at another resolution.

        Pixel centres sit at integers, so a pixel's edges are at ``x -/+ 0.5`` and resizing by ``s``
        maps ``x`` to ``(x + 0.5) * s - 0.5`` (as cv2.resize does): the principal point too, so the
        image centre stays the image centre and scaling there and back is the identity.
        """
        sx, sy = width / self.width, height / self.height
        return Intrinsics(
            self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5, width, height
        )


@dataclass
class PoseResult:
    """Camera poses of one video, as any method (ours, a baseline, ground truth) returns them."""

    timestamps: np.ndarray  # (N,) seconds, source timestamps of the sampled frames
    poses_w2c: np.ndarray  # (N, 3, 4) world-to-camera; rows of unregistered frames are undefined
    registered: np.ndarray  # (N,) bool
    intrinsics: Intrinsics
    reprojection_error: float = float("nan")  # mean SfM reprojection error in pixels
    num_points: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def registered_ratio(self) -> float:
        return float(np.mean(self.registered)) if len(self.registered) else 0.0

    @classmethod
    def unregistered(
        cls, timestamps, width: int, height: int, reason: str, focal: float | None = None, **extra
    ) -> "PoseResult":
        """Every frame unregistered (identity rows), a placeholder camera, and why (``extra["reason"]``).

        The one builder of a result that registered nothing, for every method: focal ``focal``
        (default :data:`PRIOR_FOCAL_FACTOR` x the long side, COLMAP's prior), principal point at the
        image centre ``((W - 1) / 2, (H - 1) / 2)`` in our pixel convention.
        """
        n = len(timestamps)
        f = prior_focal(width, height) if focal is None else float(focal)
        poses = np.zeros((n, 3, 4))
        poses[:, :, :3] = np.eye(3)
        cx, cy = image_centre(width, height)
        return cls(
            timestamps=np.asarray(timestamps, np.float64),
            poses_w2c=poses,
            registered=np.zeros(n, bool),
            intrinsics=Intrinsics(f, f, cx, cy, int(width), int(height)),
            extra={"reason": reason, **extra},
        )


def invert_pose(pose: np.ndarray) -> np.ndarray:
    """Invert a 3x4 rigid transform (world-to-camera <-> camera-to-world)."""
    rot, trans = pose[:3, :3], pose[:3, 3]
    out = np.empty((3, 4))
    out[:, :3] = rot.T
    out[:, 3] = -rot.T @ trans
    return out


def camera_centers(poses_w2c: np.ndarray) -> np.ndarray:
    """Camera centres in world coordinates, (N, 3)."""
    rots, trans = poses_w2c[:, :3, :3], poses_w2c[:, :3, 3]
    return -np.einsum("nji,nj->ni", rots, trans)


def write_tum(
    path: str | Path, timestamps: np.ndarray, poses_w2c: np.ndarray, registered: np.ndarray | None = None
) -> int:
    """Write registered frames as a TUM trajectory (camera-to-world); returns the line count."""
    registered = np.ones(len(timestamps), bool) if registered is None else np.asarray(registered, bool)
    lines = []
    for t, pose, ok in zip(timestamps, poses_w2c, registered):
        if not ok:
            continue
        c2w = invert_pose(np.asarray(pose, np.float64))
        qx, qy, qz, qw = Rotation.from_matrix(c2w[:, :3]).as_quat()
        tx, ty, tz = c2w[:, 3]
        lines.append(f"{t:.6f} {tx:.9f} {ty:.9f} {tz:.9f} {qx:.9f} {qy:.9f} {qz:.9f} {qw:.9f}")
    Path(path).write_text("\n".join(lines) + ("\n" if lines else ""))
    return len(lines)


def read_tum(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a TUM trajectory; returns (timestamps, world-to-camera poses N x 3 x 4)."""
    rows = [ln.split() for ln in Path(path).read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    data = np.array(rows, dtype=np.float64).reshape(-1, 8)
    poses = np.empty((len(data), 3, 4))
    for i, row in enumerate(data):
        c2w = np.empty((3, 4))
        c2w[:, :3] = Rotation.from_quat(row[4:8]).as_matrix()
        c2w[:, 3] = row[1:4]
        poses[i] = invert_pose(c2w)
    return data[:, 0], poses


def write_cameras_pkl(path: str | Path, result: PoseResult) -> None:
    n = len(result.timestamps)
    k = result.intrinsics
    with open(path, "wb") as f:
        pickle.dump(
            {
                "poses": np.asarray(result.poses_w2c, np.float64),
                "intrinsics": np.tile([k.fx, k.fy, k.cx, k.cy], (n, 1)).astype(np.float64),
                "width": int(k.width),
                "height": int(k.height),
                "timestamps": np.asarray(result.timestamps, np.float64),
                "registered": np.asarray(result.registered, bool),
            },
            f,
        )


def read_cameras_pkl(path: str | Path) -> PoseResult:
    with open(path, "rb") as f:
        d = pickle.load(f)
    fx, fy, cx, cy = np.asarray(d["intrinsics"])[0]
    return PoseResult(
        timestamps=np.asarray(d["timestamps"]),
        poses_w2c=np.asarray(d["poses"]),
        registered=np.asarray(d["registered"], bool),
        intrinsics=Intrinsics(float(fx), float(fy), float(cx), float(cy), int(d["width"]), int(d["height"])),
    )
