"""The one conversion of a COLMAP reconstruction into a :class:`dynpose.domain.camera.PoseResult`.

COLMAP puts pixel centres at +0.5 (its SIFT adds 0.5 to every keypoint, its default principal
point is ``(W / 2, H / 2)``, and ``dynpose.domain.annotate.sfm.write_database`` adds 0.5 to our
track observations); ours (OpenCV) puts them at integers. The conversion subtracts 0.5 from the
principal point, so every method's intrinsics -- ours, the COLMAP baselines, the ground truth --
share one convention. ``extra["camera_params"]`` keeps COLMAP's own parameters unchanged.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Mapping

import numpy as np

from dynpose.domain.camera import Intrinsics, PoseResult

COLMAP_PIXEL_OFFSET = 0.5  # COLMAP coordinate = ours + 0.5


@contextmanager
def colmap_log_level(level: int = 2) -> Iterator[None]:
    """COLMAP's (glog) messages below ``level`` (0 info, 1 warning, 2 error) off while the block runs."""
    import pycolmap

    before = int(pycolmap.logging.minloglevel)
    pycolmap.logging.minloglevel = max(before, level)
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = before


def to_colmap_xy(xy: np.ndarray) -> np.ndarray:
    """Our pixel coordinates (pixel centres at integers) in COLMAP's (+0.5)."""
    return np.asarray(xy) + COLMAP_PIXEL_OFFSET


def intrinsics_from_colmap(model_name: str, params, width: int, height: int) -> Intrinsics:
    """fx, fy, cx, cy in our convention from a COLMAP camera's model and parameters.

    SIMPLE_* and RADIAL* models start ``f, cx, cy``; the others (PINHOLE, OPENCV, ...) ``fx, fy, cx, cy``.
    """
    params = [float(p) for p in params]
    if model_name.startswith("SIMPLE") or model_name.startswith("RADIAL"):
        fx = fy = params[0]
        cx, cy = params[1:3]
    else:
        fx, fy, cx, cy = params[:4]
    return Intrinsics(fx, fy, cx - COLMAP_PIXEL_OFFSET, cy - COLMAP_PIXEL_OFFSET, int(width), int(height))


def pose_result_from_reconstruction(
    rec,
    timestamps,
    width: int,
    height: int,
    frame_of_image: Callable[[str], int | None] | Mapping[str, int],
    extra: dict | None = None,
) -> PoseResult:
    """Per-frame world-to-camera poses and the shared camera of a pycolmap Reconstruction.

    ``frame_of_image`` maps an image name to its frame index (a dict, or a function returning
    None for images that are no frame); frames without a posed image are unregistered with
    identity rows. ``extra`` holds ``camera_model``, ``camera_params`` (COLMAP's, unconverted),
    ``radial_k1`` for the radial models, then the caller's ``extra``.
    """
    n = len(timestamps)
    lookup = frame_of_image.get if isinstance(frame_of_image, Mapping) else frame_of_image
    poses = np.zeros((n, 3, 4))
    poses[:, :, :3] = np.eye(3)
    registered = np.zeros(n, bool)
    for image in rec.images.values():
        i = lookup(image.name)
        if image.has_pose and i is not None:
            poses[i] = image.cam_from_world().matrix()
            registered[i] = True
    camera = next(iter(rec.cameras.values()))  # one camera shared by every frame of a video
    out = {"camera_model": camera.model_name, "camera_params": [float(p) for p in camera.params]}
    if camera.model_name in ("SIMPLE_RADIAL", "RADIAL"):
        out["radial_k1"] = float(camera.params[3])
    out.update(extra or {})
    return PoseResult(
        timestamps=np.asarray(timestamps, np.float64),
        poses_w2c=poses,
        registered=registered,
        intrinsics=intrinsics_from_colmap(camera.model_name, camera.params, width, height),
        reprojection_error=float(rec.compute_mean_reprojection_error()),
        num_points=int(rec.num_points3D()),
        extra=out,
    )
