"""COLMAP baseline: SIFT + sequential matching + incremental mapping with pycolmap, on CPU.

Frames are written as PNG to a temporary directory; one SIMPLE_RADIAL camera is shared by all
images (a video has one camera). The largest reconstruction is kept; frames outside it are
unregistered. Plain COLMAP ignores ``dynamic_masks`` (every method receives them); with
``use_masks=True`` (the ``colmap_mask`` method) COLMAP's per-image masks remove features on
dynamic pixels: ``<mask_dir>/<image name>.png``, black = no features.

Options (all optional): ``matcher`` ("sequential" | "exhaustive"), ``overlap`` (sequential
window, 10), ``max_num_features`` (8192), ``max_image_size`` (-1 = as given), ``num_threads``
(-1 = all cores), ``min_model_size`` (smallest reconstruction kept; N // 2 clipped to [3, 10]),
``seed`` (0, COLMAP's random seed), ``mapper`` (dict of IncrementalMapperOptions overrides),
``pipeline`` (dict of IncrementalPipelineOptions overrides, e.g. the global-BA frequency),
``keep_dir`` (a directory to keep the workspace in, for debugging), ``verbose`` (COLMAP's info
log; off by default: the process-wide glog level is raised to warnings).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from dynpose.domain.camera import PoseResult
from dynpose.domain.colmap_io import pose_result_from_reconstruction
from dynpose.domain.video import SampledFrames
from dynpose.evaluation.baselines import failed_result

NAME = "colmap"


def write_images(sampled: SampledFrames, image_dir: Path) -> list[str]:
    image_dir.mkdir(parents=True, exist_ok=True)
    names = [f"{i:06d}.png" for i in range(len(sampled))]
    for name, frame in zip(names, sampled.frames):
        cv2.imwrite(str(image_dir / name), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return names


def write_masks(dynamic_masks: np.ndarray, names: list[str], shape: tuple[int, int], mask_dir: Path) -> None:
    """COLMAP masks: ``<image name>.png``, 0 (black) where features must not be extracted."""
    mask_dir.mkdir(parents=True, exist_ok=True)
    height, width = shape
    for name, dyn in zip(names, dynamic_masks):
        keep = np.where(np.asarray(dyn, bool), 0, 255).astype(np.uint8)
        if keep.shape != (height, width):
            keep = cv2.resize(keep, (width, height), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(mask_dir / f"{name}.png"), keep)


def _sfm(work: Path, names: list[str], use_masks: bool, opts: dict):
    """Run extraction, matching and mapping; returns (reconstructions, keypoints per image)."""
    import pycolmap

    database, images = work / "database.db", work / "images"
    if not opts.get("verbose", False):
        pycolmap.logging.minloglevel = max(int(pycolmap.logging.minloglevel), 1)  # warnings and up
    # An explicit thread count: with -1 (all cores) COLMAP warns about SIFT's RAM use on every clip.
    threads = opts.get("num_threads", -1)
    threads = threads if threads > 0 else os.cpu_count() or 1
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "SIMPLE_RADIAL"
    if use_masks:
        reader.mask_path = str(work / "masks")
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.use_gpu = False
    extraction.num_threads = threads
    extraction.max_image_size = opts.get("max_image_size", -1)
    extraction.sift.max_num_features = opts.get("max_num_features", 8192)
    pycolmap.extract_features(
        database,
        images,
        image_names=names,
        camera_mode=pycolmap.CameraMode.SINGLE,
        reader_options=reader,
        extraction_options=extraction,
        device=pycolmap.Device.cpu,
    )
    with pycolmap.Database.open(database) as db:
        keypoints = [db.num_keypoints_for_image(img.image_id) for img in db.read_all_images()]

    matching = pycolmap.FeatureMatchingOptions()
    matching.use_gpu = False
    matching.num_threads = threads
    if opts.get("matcher", "sequential") == "exhaustive":
        pycolmap.match_exhaustive(database, matching_options=matching, device=pycolmap.Device.cpu)
    else:
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = opts.get("overlap", 10)
        pairing.loop_detection = False  # needs a vocabulary tree file; clips are short
        pycolmap.match_sequential(
            database, matching_options=matching, pairing_options=pairing, device=pycolmap.Device.cpu
        )

    mapping = pycolmap.IncrementalPipelineOptions()
    mapping.num_threads = threads
    mapping.min_model_size = opts.get("min_model_size", max(3, min(10, len(names) // 2)))
    mapping.random_seed = mapping.mapper.random_seed = opts.get("seed", 0)
    for key, value in opts.get("mapper", {}).items():
        setattr(mapping.mapper, key, value)
    for key, value in opts.get("pipeline", {}).items():  # IncrementalPipelineOptions, e.g. ba_global_frames_ratio
        setattr(mapping, key, value)
    (work / "sparse").mkdir(exist_ok=True)
    recs = pycolmap.incremental_mapping(database, images, work / "sparse", options=mapping)
    return recs, keypoints


def to_pose_result(rec, sampled: SampledFrames, names: list[str]) -> PoseResult:
    """World-to-camera poses per frame from a pycolmap Reconstruction (unregistered frames: identity).

    The shared conversion (:func:`dynpose.domain.colmap_io.pose_result_from_reconstruction`): COLMAP's
    SIFT keypoints and principal point are in its +0.5 pixel convention, the result in ours.
    """
    height, width = sampled.frames.shape[1:3]  # the size COLMAP saw
    points = np.array([p.xyz for p in rec.points3D.values()], np.float32).reshape(-1, 3)
    index = {name: i for i, name in enumerate(names)}
    return pose_result_from_reconstruction(
        rec, sampled.timestamps, int(width), int(height), index, extra={"points3d": points}
    )


def run(
    sampled: SampledFrames, dynamic_masks: np.ndarray | None = None, use_masks: bool = False, **options
) -> PoseResult:
    """COLMAP on the sampled frames. Plain COLMAP ignores ``dynamic_masks`` unless ``use_masks``."""
    method = "colmap_mask" if use_masks else NAME
    if use_masks and dynamic_masks is None:
        return failed_result(sampled, "use_masks=True but no dynamic_masks given", method=method)
    if len(sampled) < 2:
        return failed_result(sampled, "fewer than 2 frames", method=method)
    start = time.perf_counter()
    keep_dir = options.get("keep_dir")
    with tempfile.TemporaryDirectory(prefix="dynpose_colmap_") as tmp:
        work = Path(keep_dir) if keep_dir else Path(tmp)
        try:
            names = write_images(sampled, work / "images")
            shape = tuple(sampled.frames.shape[1:3])
            if use_masks:
                write_masks(dynamic_masks, names, shape, work / "masks")
            recs, keypoints = _sfm(work, names, use_masks, options)
            info = {
                "method": method,
                "num_models": len(recs),
                "keypoints_per_image": float(np.mean(keypoints)) if keypoints else 0.0,
            }
            if not recs:
                return failed_result(sampled, "no reconstruction (too few matches or no initial pair)", **info)
            result = to_pose_result(max(recs.values(), key=lambda r: r.num_reg_images()), sampled, names)
        except Exception as exc:  # COLMAP errors must not stop a batch; report them instead
            return failed_result(sampled, f"colmap error: {type(exc).__name__}: {exc}", method=method)
    result.extra.update(info, seconds=time.perf_counter() - start)
    return result
