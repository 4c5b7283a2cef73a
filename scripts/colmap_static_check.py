#!/usr/bin/env python
"""Realism check of the synthetic renderer: can feature-based SfM (COLMAP SIFT, no masks)
reconstruct a static-scene clip, and how close are its poses to the ground truth?

Renders (or loads) a static-scene clip, writes its frames as images, runs pycolmap feature
extraction, sequential matching and incremental mapping, then aligns the registered camera
centres to the ground truth with Sim(3) (Umeyama, via evo) and prints the registration ratio and
the ATE (RMSE of the aligned positions), also relative to the trajectory's extent.

    python scripts/colmap_static_check.py --layout room --seed 3
    python scripts/colmap_static_check.py --clip out/bench/030_room_static_scene.mp4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def run_colmap(
    images: list[np.ndarray], work: Path, known_intrinsics=None, threads: int = 2, focal_prior=None
) -> dict[int, np.ndarray]:
    """Registered frame index -> world-to-camera 3x4 pose from incremental SfM.

    ``known_intrinsics`` (fx, fy, cx, cy) fixes a pinhole camera; ``focal_prior`` (f, cx, cy) only
    initialises a SIMPLE_RADIAL camera that bundle adjustment refines; neither: COLMAP's default
    guess (1.2 x the image size) is refined."""
    import pycolmap

    img_dir = work / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    for k, img in enumerate(images):
        cv2.imwrite(str(img_dir / f"{k:05d}.png"), img[..., ::-1])
    db = work / "database.db"
    if db.exists():
        db.unlink()
    reader = pycolmap.ImageReaderOptions()
    if known_intrinsics is not None:
        reader.camera_model = "PINHOLE"
        reader.camera_params = ",".join(f"{v:.6f}" for v in known_intrinsics)
    elif focal_prior is not None:
        reader.camera_model = "SIMPLE_RADIAL"
        reader.camera_params = ",".join(f"{v:.6f}" for v in focal_prior) + ",0"
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = threads
    extraction.use_gpu = False
    pycolmap.extract_features(
        db,
        img_dir,
        camera_mode=pycolmap.CameraMode.SINGLE,
        reader_options=reader,
        extraction_options=extraction,
        device=pycolmap.Device.cpu,
    )
    if known_intrinsics is not None or focal_prior is not None:
        database = pycolmap.Database.open(db)
        for cam in database.read_all_cameras():
            cam.has_prior_focal_length = True  # lets two-view geometry use the calibrated (E) model
            database.update_camera(cam)
        database.close()
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = threads
    matching.use_gpu = False
    pairing = pycolmap.SequentialPairingOptions()
    pairing.overlap = 12
    pycolmap.match_sequential(db, matching_options=matching, pairing_options=pairing, device=pycolmap.Device.cpu)
    opts = pycolmap.IncrementalPipelineOptions()
    opts.num_threads = threads
    if known_intrinsics is not None:
        opts.ba_refine_focal_length = False
        opts.ba_refine_principal_point = False
        opts.ba_refine_extra_params = False
    recs = pycolmap.incremental_mapping(db, img_dir, work / "sparse", options=opts)
    if not recs:
        return {}
    rec = max(recs.values(), key=lambda r: r.num_reg_images())
    out = {}
    for img in rec.images.values():
        if img.has_pose:
            out[int(Path(img.name).stem)] = np.asarray(img.cam_from_world().matrix())
    return out


def ate_sim3(est_w2c: dict[int, np.ndarray], gt_w2c: np.ndarray, times: np.ndarray) -> dict:
    """ATE (RMSE, metres) of camera centres after Sim(3) alignment with evo; extent-relative too."""
    from evo.core import metrics
    from evo.core.trajectory import PoseTrajectory3D

    from dynpose.domain.camera import invert_pose

    idx = sorted(est_w2c)

    def traj(poses):
        mats = []
        for p in poses:
            c2w = np.eye(4)
            c2w[:3] = invert_pose(p)
            mats.append(c2w)
        return PoseTrajectory3D(poses_se3=mats, timestamps=times[idx])

    est = traj([est_w2c[i] for i in idx])
    ref = traj([gt_w2c[i] for i in idx])
    est.align(ref, correct_scale=True)
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((ref, est))
    rmse = float(ape.get_statistic(metrics.StatisticsType.rmse))
    centres = np.array([invert_pose(p)[:, 3] for p in gt_w2c])
    extent = float(np.max(np.linalg.norm(centres[:, None] - centres[None], axis=2)))
    path_len = float(np.sum(np.linalg.norm(np.diff(centres, axis=0), axis=1)))
    return {"ate_m": rmse, "extent_m": extent, "path_m": path_len, "ate_rel_extent": rmse / max(extent, 1e-9)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layout", default="room", choices=["room", "street", "plaza"])
    ap.add_argument("--trajectory", default="handheld_walk")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--fps", type=float, default=12.0)
    ap.add_argument("--width", type=int, default=854)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument(
        "--clip", help="an existing clip <name>.mp4 with its <name>/ ground-truth folder (instead of rendering)"
    )
    ap.add_argument(
        "--intrinsics",
        choices=["prior", "fixed", "unknown"],
        default="prior",
        help="prior: start from the true focal length and let bundle adjustment refine it (default); "
        "fixed: true pinhole intrinsics, not refined; unknown: COLMAP's default focal guess",
    )
    ap.add_argument("--work", help="working folder (default: a temporary one)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    t0 = time.perf_counter()
    if args.clip:
        from dynpose.domain.camera import read_cameras_pkl
        from dynpose.domain.video import sample_frames

        clip_path = Path(args.clip)
        gt = read_cameras_pkl(clip_path.with_suffix("") / "cameras.pkl")
        frames = sample_frames(str(clip_path), fps=0).frames
        poses, times, k = gt.poses_w2c, gt.timestamps, gt.intrinsics
        intr = (k.fx, k.fy, k.cx, k.cy)
        label = str(clip_path)
    else:
        from dynpose.domain.synth import ClipSpec, render_clip

        spec = ClipSpec(
            seed=args.seed,
            layout=args.layout,
            trajectory=args.trajectory,
            variant="static_scene",
            width=args.width,
            height=args.height,
            fps=args.fps,
            seconds=args.seconds,
        )
        clip = render_clip(spec)
        frames, poses, times = clip.frames, clip.poses_w2c, clip.timestamps
        intr = tuple(clip.intrinsics[0])
        label = f"rendered {args.layout}/{args.trajectory} seed {args.seed}"
    t_render = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        est = run_colmap(
            list(frames),
            work,
            intr if args.intrinsics == "fixed" else None,
            threads=args.threads,
            focal_prior=(0.5 * (intr[0] + intr[1]), intr[2], intr[3]) if args.intrinsics == "prior" else None,
        )
    t_sfm = time.perf_counter() - t0 - t_render
    n = len(frames)
    result = {
        "clip": label,
        "intrinsics": args.intrinsics,
        "frames": n,
        "registered": len(est),
        "registration_ratio": len(est) / n,
        "render_s": round(t_render, 1),
        "sfm_s": round(t_sfm, 1),
    }
    if len(est) >= 3:
        result.update(ate_sim3(est, poses, times))
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    ok = result["registration_ratio"] >= 0.8 and result.get("ate_rel_extent", 1.0) < 0.05
    print("PASS" if ok else "FAIL", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
